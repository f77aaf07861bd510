"""/crm/marketing/: the connection, Meta assets, sync and stats endpoints (one module each)."""
from marketing.views import assets, connection, stats, sync

app_name = "marketing"
urlpatterns = connection.urlpatterns + assets.urlpatterns + sync.urlpatterns + stats.urlpatterns
