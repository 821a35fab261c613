<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · rtsp-resume</title>
<link rel="stylesheet" href="/static/portal.css">
</head>
<body>
<header class="top">
  <a class="brand" href="/">rtsp&#8209;resume</a>
  % if user:
  <nav aria-label="Main">
    <a href="/programs">Programs</a>
    <a href="/bookmarks">My bookmarks</a>
    <form method="post" action="/logout" class="inline">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="link">Sign out</button>
    </form>
  </nav>
  % end
</header>
<main>
{{!base}}
</main>
% if user:
<footer>Signed in as <strong>{{user}}</strong></footer>
% end
</body>
</html>
