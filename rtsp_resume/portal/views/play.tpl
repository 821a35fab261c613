% rebase('base.tpl', title=title, user=user, csrf=csrf)
<h1>{{title}}</h1>
<div class="card stack">
  % if resumed:
  <p>Resumes at <strong>{{fmt_pos(play["ContentBM"])}}</strong> of {{fmt_dur(program.duration)}}:
  the address below starts there by itself.</p>
  % else:
  <p>Plays from the start ({{fmt_dur(program.duration)}}).</p>
  % end
  <label for="play-url">{{"Resume URL" if resumed else "Play URL"}}</label>
  <textarea id="play-url" readonly rows="6" spellcheck="false">{{play["url"]}}</textarea>
  <p class="hint">Copy it into a player (for example <code>ffplay</code> or VLC), or:</p>
  <a class="button primary" href="{{play['url']}}">Open</a>
</div>
<p><a href="/bookmarks">My bookmarks</a> · <a href="/programs">Programs</a></p>
