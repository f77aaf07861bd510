"""Settings for CRM Ventas Marketing, read from the environment (django-environ).

Embedded defaults (DEBUG on) run the demo and the tests with no services: a SQLite file, the
django-q2 ORM broker, a local-memory cache and the Meta sandbox on 127.0.0.1. Production sets
DEBUG=false and must then provide a real SECRET_KEY, META_TOKEN_KEYS and a shared cache.
"""
from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 - refused when DEBUG is off
# A fixed Fernet key for the demo and tests only; refused when DEBUG is off.
DEV_TOKEN_KEY = "bW9ja2luZy1rZXktZm9yLWRldi1vbmx5LTAwMDAwMDA="

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# How many reverse proxies sit in front of the app: the client IP is that many hops from the
# right of X-Forwarded-For. 0 means REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: /crm/docs/ works offline
    "social_django",
    "django_q",
    "crm_marketing",
    "meta_oauth",
    "marketing",
    "automation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "crm_marketing.urls"
WSGI_APPLICATION = "crm_marketing.wsgi.application"
ASGI_APPLICATION = "crm_marketing.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the django-q2 worker share the file: wait for locks, take the write
    # lock up front and let readers run beside the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://crm-marketing")}
if env.str("Q_BROKER_URL", default=""):
    CACHES["broker"] = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": env.str("Q_BROKER_URL")}  # django-q2's connection
CACHE_IS_SHARED = not CACHES["default"]["BACKEND"].endswith(("LocMemCache", "DummyCache"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/hub/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / env.str("STATIC_ROOT", default="staticfiles")  # an absolute path stays as it is
# Where `npm run build` (frontend/) writes the hub; the /hub/ shell reads its Vite manifest.
HUB_BUILD_DIR = BASE_DIR / "static" / "hub"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# A CSRF refusal under /crm/ is the JSON envelope (403 csrf_failed), elsewhere Django's page.
CSRF_FAILURE_VIEW = "crm_marketing.pages.csrf_failure"
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its authenticate_header makes anonymous calls 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "crm_marketing.authentication.TokenAuthentication",
        "crm_marketing.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["crm_marketing.envelope.EnvelopeRenderer"],
    "DEFAULT_PARSER_CLASSES": ["crm_marketing.envelope.JSONParser"],
    "EXCEPTION_HANDLER": "crm_marketing.envelope.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "crm_marketing.openapi.EnvelopeAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CRM Ventas Marketing API",
    "DESCRIPTION": "Meta Ads Marketing Hub, ROI tracking and WhatsApp HSM automation.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components without the read-only fields (the API refuses them).
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "crm_marketing.openapi.add_error_envelope"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# django-ratelimit rates ("count/period"): per user on authenticated calls, per IP on anonymous.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="600/m")
API_ANON_RATE_LIMIT = env.str("API_ANON_RATE_LIMIT", default="120/m")
WEBHOOK_RATE_LIMIT = env.str("WEBHOOK_RATE_LIMIT", default="6000/m")
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="10/m")  # sign-in attempts per username from one address
# ... and per username from all addresses together: looser, so an attacker cannot lock the user out for long.
LOGIN_USERNAME_RATE_LIMIT = env.str("LOGIN_USERNAME_RATE_LIMIT", default="60/10m")
RATELIMIT_IP_META_KEY = "crm_marketing.ratelimits.client_ip"
SILENCED_SYSTEM_CHECKS: list[str] = []
if not CACHE_IS_SHARED:
    # A local-memory cache counts per process, which is right for the one-process demo and tests.
    SILENCED_SYSTEM_CHECKS += ["django_ratelimit.E003", "django_ratelimit.W001"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Covering indexes (Index(include=...)) are a PostgreSQL speed-up; SQLite builds them without
    # the extra columns, which is fine for the embedded default.
    SILENCED_SYSTEM_CHECKS += ["models.W040"]

# --- Tasks (django-q2) -----------------------------------------------------------------------
Q_BROKER_URL = env.str("Q_BROKER_URL", default="")
Q_CLUSTER = {
    "name": "crm_marketing",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 600,
    "retry": 900,
    "max_attempts": 3,
    "catch_up": False,
    "ack_failures": True,
    "sync": env.bool("Q_SYNC", default=False),
}
if Q_BROKER_URL:
    Q_CLUSTER["redis"] = Q_BROKER_URL
    # Through django-redis's per-process connection pool: django-q2 otherwise builds a new Redis client
    # for every queued task (a TCP connect and a handshake per webhook: ~1.5 ms of CPU on the request).
    Q_CLUSTER["django_redis"] = "broker"
else:
    Q_CLUSTER["orm"] = "default"

# Webhook events are processed by drain tasks (crm_marketing.webhook_processing.drain_events): events claimed at a time
# (a worker killed mid-batch leaves at most these to the stuck sweep, which runs them again; the claim, the outcomes'
# and the events' writes are a few statements per batch: leadgen at 1,000/s needed 200, bench/README.md), and
# seconds before a drain hands over.
WEBHOOK_DRAIN_BATCH = env.int("WEBHOOK_DRAIN_BATCH", default=200)
WEBHOOK_DRAIN_SECONDS = env.float("WEBHOOK_DRAIN_SECONDS", default=30.0)
WEBHOOK_DRAIN_GATHER_SECONDS = env.float("WEBHOOK_DRAIN_GATHER_SECONDS", default=0.2)  # a drain waits this long for a burst to gather
# New domain events are delivered the same way (crm_marketing.event_drain): events per transaction, seconds per drain.
EVENT_DRAIN_BATCH = env.int("EVENT_DRAIN_BATCH", default=100)
EVENT_DRAIN_SECONDS = env.float("EVENT_DRAIN_SECONDS", default=30.0)
EVENT_DRAIN_GATHER_SECONDS = env.float("EVENT_DRAIN_GATHER_SECONDS", default=0.2)

# --- Automation send engine -----------------------------------------------------------------
AUTOMATION_PASS_SECONDS = env.float("AUTOMATION_PASS_SECONDS", default=50.0)  # one send pass stops after this
AUTOMATION_PASS_BATCH = env.int("AUTOMATION_PASS_BATCH", default=200)  # sends claimed at a time (one limiter round trip)
AUTOMATION_SEND_THREADS = env.int("AUTOMATION_SEND_THREADS", default=8)  # POSTs in flight per pass (one Graph client each)
AUTOMATION_MAX_PARALLEL_PASSES = env.int("AUTOMATION_MAX_PARALLEL_PASSES", default=4)
AUTOMATION_SEND_LEASE_SECONDS = env.float("AUTOMATION_SEND_LEASE_SECONDS", default=120.0)  # claimed, never posted: re-queued after
AUTOMATION_THROUGHPUT_HEADROOM = env.float("AUTOMATION_THROUGHPUT_HEADROOM", default=0.95)  # share of a number's rate we fill
AUTOMATION_SECOND_GUARD = env.float("AUTOMATION_SECOND_GUARD", default=0.1)  # a slot taken this close to the end of its second is not used

# --- ROI stats -------------------------------------------------------------------------------
# Seconds a cached stats read is kept (marketing/services/stats_cache.py); an entry is only served while
# the account's rollup is unchanged, so this bounds memory, not staleness. 0 turns the cache off.
STATS_CACHE_SECONDS = env.int("STATS_CACHE_SECONDS", default=600)
ROLLUP_FOLD_GATHER_SECONDS = env.float("ROLLUP_FOLD_GATHER_SECONDS", default=0.25)  # a queued fold waits this long for a burst

# --- Meta ------------------------------------------------------------------------------------
SANDBOX_GRAPH_URL = "http://127.0.0.1:8765"
META_GRAPH_URL = env.str("META_GRAPH_URL", default=SANDBOX_GRAPH_URL if DEBUG else "https://graph.facebook.com")
META_DIALOG_URL = env.str("META_DIALOG_URL", default=META_GRAPH_URL if DEBUG else "https://www.facebook.com")
META_GRAPH_API_VERSION = env.str("META_GRAPH_API_VERSION", default="v26.0")
META_APP_ID = env.str("META_APP_ID", default="sandbox-app")
META_APP_SECRET = env.str("META_APP_SECRET", default="sandbox-secret")
META_WEBHOOK_VERIFY_TOKEN = env.str("META_WEBHOOK_VERIFY_TOKEN", default="sandbox-verify-token")
META_TOKEN_KEYS = env.list("META_TOKEN_KEYS", default=[DEV_TOKEN_KEY] if DEBUG else [])
META_HTTP_TIMEOUT = env.float("META_HTTP_TIMEOUT", default=10.0)
META_MAX_RETRIES = env.int("META_MAX_RETRIES", default=3)
META_MAX_BACKOFF_SECONDS = env.float("META_MAX_BACKOFF_SECONDS", default=30.0)
# Calls made while a person waits (hub endpoints) retry once and wait at most this long.
META_INTERACTIVE_MAX_WAIT_SECONDS = env.float("META_INTERACTIVE_MAX_WAIT_SECONDS", default=5.0)
META_SYNC_INTERVAL_HOURS = env.int("META_SYNC_INTERVAL_HOURS", default=4)
# A running sync renews its lease as it progresses; silent this long, its worker is taken for dead and the
# next request or the re-delivered task takes the sync over.
META_SYNC_LEASE_SECONDS = env.float("META_SYNC_LEASE_SECONDS", default=60.0)
# Seconds between the first polls of an insights report run (grows 1.5x per poll, capped at 15 s).
META_INSIGHTS_POLL_SECONDS = env.float("META_INSIGHTS_POLL_SECONDS", default=2.0)
META_LEAD_ACTION_TYPES = env.list(
    "META_LEAD_ACTION_TYPES",
    default=["lead", "onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead",
             "onsite_conversion.messaging_conversation_started_7d"],
)
# Where the browser lands after the Meta dialog (the hub page).
HUB_MARKETING_URL = env.str("HUB_MARKETING_URL", default="/hub/marketing")
# The OAuth redirect URI registered in the Meta app; empty = this host's /crm/auth/meta/callback.
META_OAUTH_REDIRECT_URI = env.str("META_OAUTH_REDIRECT_URI", default="")

# --- social-auth (Meta OAuth) ----------------------------------------------------------------
SOCIAL_AUTH_JSONFIELD_ENABLED = True
SOCIAL_AUTH_URL_NAMESPACE = "social"
SOCIAL_AUTH_META_KEY = META_APP_ID
SOCIAL_AUTH_META_SECRET = META_APP_SECRET
SOCIAL_AUTH_REDIRECT_IS_HTTPS = env.bool("SOCIAL_AUTH_REDIRECT_IS_HTTPS", default=not DEBUG)

# --- Production run mode and observability ----------------------------------------------------
# `manage.py run_production` (make serve): gunicorn and QCLUSTER_PROCESSES qcluster processes.
WEB_BIND = env.str("WEB_BIND", default="127.0.0.1:8000")
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=2)  # gunicorn worker processes
WEB_THREADS = env.int("WEB_THREADS", default=1)  # threads per worker; more than 1 runs gunicorn's gthread workers
WEB_TIMEOUT = env.int("WEB_TIMEOUT", default=30)  # seconds before gunicorn restarts a stuck worker
QCLUSTER_PROCESSES = env.int("QCLUSTER_PROCESSES", default=2)  # each runs Q_WORKERS task workers
QCLUSTER_NICE = env.int("QCLUSTER_NICE", default=0)  # niceness of the qcluster processes: >0 lets web requests go first
STOP_TIMEOUT = env.int("STOP_TIMEOUT", default=30)  # seconds a graceful stop may take before SIGKILL
HEALTH_RATE_LIMIT = env.str("HEALTH_RATE_LIMIT", default="300/m")  # /healthz and /readyz, per address
# Load balancer probes come over plain HTTP straight to the host: no redirect to https for them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if not DEBUG:
    # gunicorn's sync workers serve many requests each: keep the connection, check it before use
    # (without it a webhook connects twice: django-q2's ORM broker closes "old" connections to enqueue).
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache":
    # A dead Redis fails a request (and /readyz) in seconds instead of hanging a worker.
    CACHES["default"].setdefault("OPTIONS", {}).update({"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2})

# Logs: one JSON object per line in production (LOG_FORMAT=json), with the request id and the
# account id; tokens, credentials and phone numbers are masked whatever the format.
LOG_FORMAT = env.str("LOG_FORMAT", default="") or ("plain" if DEBUG else "json")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOG_REQUESTS = env.bool("LOG_REQUESTS") if env.str("LOG_REQUESTS", default="") else not DEBUG  # one line per request (method, path, status, ms)
MIDDLEWARE.insert(0, "crm_marketing.logging.RequestIdMiddleware")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "crm_marketing.logging.RequestContextFilter"},
        "redact_secrets": {"()": "crm_marketing.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(account_id)s] %(message)s"},
        "json": {"()": "crm_marketing.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                    "filters": ["request_context", "redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own default sends "django" to an unfiltered handler of its own: ours replaces it.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "environ": {"level": "WARNING"},  # ".env not found" on every start is not news in production
    },
}


def _refuse_unsafe_production() -> None:
    """With DEBUG off, refuse to boot on settings that only suit a developer's machine."""
    problems = []
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 40:
        problems.append("SECRET_KEY is the development key or shorter than 40 characters")
    if not META_TOKEN_KEYS or DEV_TOKEN_KEY in META_TOKEN_KEYS:
        problems.append("META_TOKEN_KEYS is empty or holds the development key")
    if not CACHE_IS_SHARED:
        problems.append("CACHE_URL must be a shared cache (e.g. redis://...) for rate limits")
    if META_APP_SECRET in ("", "sandbox-secret"):
        # It signs Meta's webhooks: the public sandbox value would let anyone forge them.
        problems.append("META_APP_SECRET is empty or the sandbox's")
    if problems:
        raise ImproperlyConfigured("Refusing to start with DEBUG off: " + "; ".join(problems) + ".")


if not DEBUG:
    _refuse_unsafe_production()

if env.bool("FAST_PASSWORD_HASHER", default=False):
    # Tests create many users; the default hasher's deliberate slowness buys nothing there.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
