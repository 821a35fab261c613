% rebase('base.tpl', title=title, user=user, csrf=csrf)
<h1>{{status}}</h1>
<p class="error" role="alert">{{detail or "Something went wrong."}}</p>
<p><a href="/">Back to the portal</a></p>
