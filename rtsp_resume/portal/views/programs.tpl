% rebase('base.tpl', title=title, user=user, csrf=csrf)
<h1>Programs</h1>
% if not programs:
<p class="empty">The catalogue is empty: no playable files in the media folder.</p>
% end
<ul class="cards">
% for p in programs:
  <li class="card">
    <h2>{{p.title}}</h2>
    <p class="meta">{{fmt_dur(p.duration)}} · <code>{{p.content_id}}</code></p>
    <div class="actions">
      <form method="post" action="/play">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <input type="hidden" name="ContentID" value="{{p.content_id}}">
        <button type="submit" class="primary" aria-label="Play {{p.title}} from the start">Play</button>
      </form>
      % mark = marks.get(p.content_id)
      % if mark:
      <form method="post" action="/resume">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <input type="hidden" name="ContentID" value="{{mark.content_id}}">
        <input type="hidden" name="ContentBM" value="{{repr(mark.position)}}">
        <input type="hidden" name="EncryptToken" value="{{mark.encrypt_token}}">
        <button type="submit" class="bookmark">Resume at {{fmt_pos(mark.position)}}</button>
      </form>
      % end
    </div>
  </li>
% end
</ul>
