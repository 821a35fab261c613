% rebase('base.tpl', title=title, user=user, csrf=csrf)
<h1>Sign in</h1>
<p class="lead">Sign in to watch programs and pick up where an interrupted one stopped.</p>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
<form method="post" action="/login" class="card stack">
  <input type="hidden" name="csrf" value="{{csrf}}">
  <label for="user">User name</label>
  <input id="user" name="user" value="{{user_name}}" autocomplete="username"
         autocapitalize="none" spellcheck="false" required maxlength="64">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit" class="primary">Sign in</button>
</form>
