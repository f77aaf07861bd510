"""The WSGI application gunicorn serves (manage.py run_production).

Once the app and its URLconf (hence every view module) are loaded, ``gc.freeze()`` moves the objects that
exist for the life of the process into the collector's permanent generation: a full collection then no
longer walks them (~120,000 objects), which was the slow call in ten of a large stats read (5,000 campaigns:
p95 185 -> 118 ms, median unchanged; bench/README.md)."""
import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm_marketing.settings")
application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - imports the views now, so that they are frozen too
gc.collect()  # what start-up left as garbage is freed, not frozen for the worker's life
gc.freeze()
