% rebase('base.tpl', title=title, user=user, csrf=csrf)
% import shlex
% url = play["url"]
<h1>{{title}}</h1>
<div class="card stack">
  % if resumed:
  <p>Resumes at <strong>{{fmt_pos(play["ContentBM"])}}</strong> of {{fmt_dur(program.duration)}}:
  the address below starts there by itself.</p>
  % else:
  <p>Plays from the start ({{fmt_dur(program.duration)}}).</p>
  % end
  <label for="play-url">{{"Resume URL" if resumed else "Play URL"}}</label>
  <textarea id="play-url" readonly rows="6" spellcheck="false">{{url}}</textarea>
  <div class="actions">
    <button type="button" data-copy="play-url">Copy the URL</button>
    <a class="button primary" href="{{url}}">Open</a>
  </div>
  <p class="hint">Or paste one of these commands into a terminal. If the stream breaks off,
  your bookmark is left under <a href="/bookmarks">My bookmarks</a>.</p>
  <label for="ffplay-command">ffplay (FFmpeg)</label>
  <input id="ffplay-command" readonly spellcheck="false" value="ffplay {{shlex.quote(url)}}">
  <div class="actions"><button type="button" data-copy="ffplay-command">Copy the ffplay command</button></div>
  <label for="vlc-command">VLC</label>
  <input id="vlc-command" readonly spellcheck="false" value="vlc {{shlex.quote(url)}}">
  <div class="actions"><button type="button" data-copy="vlc-command">Copy the VLC command</button></div>
</div>
<p><a href="/bookmarks">My bookmarks</a> · <a href="/programs">Programs</a></p>
<script src="/static/copy.js" defer></script>
