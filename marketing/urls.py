"""/crm/marketing/: the connection, sync and stats endpoints (one module each)."""
from marketing.views import connection, stats, sync

app_name = "marketing"
urlpatterns = connection.urlpatterns + sync.urlpatterns + stats.urlpatterns
