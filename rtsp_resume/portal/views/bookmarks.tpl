% rebase('base.tpl', title=title, user=user, csrf=csrf)
<h1>My bookmarks</h1>
% for title_, interrupted_at in unmade:
<p class="hint" role="status">{{title_}} broke off on
<time datetime="{{iso_time(interrupted_at)}}">{{iso_time(interrupted_at).replace("T", " ").replace("Z", " UTC")}}</time>
before the streaming server could confirm that any picture reached you, so no bookmark was
made for it this time.</p>
% end
% if not items:
<p class="empty">No bookmarks yet. When a program you watch is cut off, the streaming
server leaves a bookmark here so you can resume it. <a href="/programs">Browse programs</a>.</p>
% end
<ul class="cards">
% for b, title_, duration in items:
  <li class="card">
    <h2>{{title_}}</h2>
    <p class="meta">Interrupted at {{fmt_pos(b.position)}}
    % if duration:
    of {{fmt_dur(duration)}}
    % end
    · saved <time datetime="{{iso_time(b.saved_at)}}">{{iso_time(b.saved_at).replace("T", " ").replace("Z", " UTC")}}</time></p>
    % if duration:
    <progress max="{{duration}}" value="{{b.position}}" aria-label="Watched of {{title_}}"></progress>
    % end
    <form method="post" action="/resume">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <input type="hidden" name="ContentID" value="{{b.content_id}}">
      <input type="hidden" name="ContentBM" value="{{repr(b.position)}}">
      <input type="hidden" name="EncryptToken" value="{{b.encrypt_token}}">
      <button type="submit" class="bookmark">Resume at {{fmt_pos(b.position)}}</button>
    </form>
  </li>
% end
</ul>
