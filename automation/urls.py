"""automation's API, mounted under /crm/marketing/ by the root URLconf (where the seed's client calls
it), so that ``marketing`` never imports ``automation``."""
from automation.views import logs, rules, templates

app_name = "automation"
urlpatterns = templates.urlpatterns + rules.urlpatterns + logs.urlpatterns
