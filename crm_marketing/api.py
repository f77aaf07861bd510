"""API conventions: pagination and the account-scoped bases.

Every view under /crm/ inherits ``AccountScopedViewSet`` or ``AccountScopedAPIView``. They
resolve ``request.account`` from the user's membership, rate-limit the call, and own
``get_queryset``: a subclass that tries to define its own scoping is refused at import time.
"""
from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, permissions, serializers, status, viewsets
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_marketing.envelope import EnvelopeRenderer, error_body, exception_handler  # noqa: F401 - re-exported
from crm_marketing.logging import bind_account
from crm_marketing.ratelimits import enforce_rate_limit
from crm_marketing.tenancy import ALL_ROLES, resolve_account


class EnvelopePagination(LimitOffsetPagination):
    """limit (default 50, max 200) and offset; out-of-range values are a 400, not silently clamped."""

    default_limit = 50
    max_limit = 200

    def paginate_queryset(self, queryset, request, view=None):
        params = _PageParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        self.limit = params.validated_data.get("limit", self.default_limit)
        self.offset = params.validated_data.get("offset", 0)
        self.count = queryset.count()
        self.request = request
        return list(queryset[self.offset : self.offset + self.limit])

    def get_paginated_response(self, data):
        return Response({"results": data, "total": self.count, "limit": self.limit, "offset": self.offset})

    def get_paginated_response_schema(self, schema):
        return page_schema(schema)

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "limit", "required": False, "in": "query", "description": f"Page size (default {self.default_limit}, at most {self.max_limit}).",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit}},
            {"name": "offset", "required": False, "in": "query", "description": "Rows to skip.",
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_DB_INTEGER - self.max_limit}},
        ]


def page_schema(results: dict, **extra_properties: dict) -> dict:
    """The OpenAPI schema of a page: {results, total, limit, offset} (+ any extra keys a view adds)."""
    return {
        "type": "object",
        "required": ["results", "total", "limit", "offset", *extra_properties],
        "properties": {
            "results": results,
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1},
            "offset": {"type": "integer", "minimum": 0},
            **extra_properties,
        },
    }


# The largest id or offset a query may carry: a signed 64-bit integer, SQLite's and PostgreSQL's limit.
MAX_DB_INTEGER = 2**63 - 1


class _PageParams(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=EnvelopePagination.max_limit, required=False)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_DB_INTEGER - EnvelopePagination.max_limit, required=False)


def _scoping(func):
    func._scoping_base = True
    return func


_SEALED = ("initial", "get_queryset", "get_object", "perform_create", "dispatch")


# The statuses a view that calls Meta while the user waits adds to its documented errors.
META_ERRORS = (502, 503)


class AccountScopedMixin:
    """Resolves request.account once per request and rate-limits it; subclasses cannot opt out."""

    allowed_roles: frozenset[str] = ALL_ROLES
    rate_limit_group = "api"
    # Error statuses this view answers beyond those every /crm/ operation can (crm_marketing.openapi
    # documents 400/401/403/429 everywhere, 404 with a path parameter, 409/413 on writes).
    error_statuses: tuple[int, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _SEALED:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_scoping_base", False):
                raise TypeError(f"{cls.__name__}.{name} would bypass account scoping; use narrow_queryset() or a service instead.")

    @_scoping
    def initial(self, request, *args, **kwargs):
        # Count the call before permissions, so anonymous and bad-token callers are limited too.
        try:
            self.perform_authentication(request)
        finally:
            enforce_rate_limit(request, group=self.rate_limit_group)
        super().initial(request, *args, **kwargs)  # permissions, DRF throttles
        request.account, request.membership = resolve_account(request, self.allowed_roles)
        bind_account(request.account.pk)  # every later log line of this request names the account
        _refuse_nul_in_url(request)


def _refuse_nul_in_url(request) -> None:
    """A NUL in the path or query can only be an attack or a bug, and PostgreSQL refuses it in any
    text it is compared with: a 400 here instead of a 500 from whichever query meets it first."""
    query = request.query_params
    if "\x00" in request.path or any("\x00" in key or any("\x00" in v for v in query.getlist(key)) for key in query):
        raise exceptions.ParseError("The URL contains a NUL character.")


class UserScopedAPIView(APIView):
    """For views about the caller only (``/crm/me``): authenticated and rate-limited like the API,
    answering from the user's own memberships; no account rows, so nothing to scope."""

    def initial(self, request, *args, **kwargs):
        try:
            self.perform_authentication(request)
        finally:
            enforce_rate_limit(request, group="api")
        super().initial(request, *args, **kwargs)
        _refuse_nul_in_url(request)


class AccountScopedAPIView(AccountScopedMixin, APIView):
    """For views without a model (stats, actions): use request.account, never a client-given id."""

    # The OpenAPI schema reads this; set it to the response serializer where one exists.
    serializer_class = None


class AccountScopedViewSet(AccountScopedMixin, viewsets.GenericViewSet):
    """CRUD over one AccountOwned model, always filtered to request.account."""

    pagination_class = EnvelopePagination
    ordering_fields: tuple[str, ...] = ()
    default_ordering: tuple[str, ...] = ("-id",)
    filter_serializer_class: type[serializers.Serializer] | None = None

    def narrow_queryset(self, queryset):
        """Hook to narrow further (seller sees own rows, filters). Cannot widen: re-scoped after."""
        return queryset

    @_scoping
    def get_queryset(self):
        account = self.request.account
        queryset = self.queryset.all().filter(account=account)
        queryset = self.narrow_queryset(queryset)
        if self.action == "list":
            queryset = self.apply_filters(queryset)
            queryset = queryset.order_by(*self.ordering())
        return queryset.filter(account=account)

    @_scoping
    def get_object(self):
        return super().get_object()

    @_scoping
    def perform_create(self, serializer):
        serializer.instance = self.create_row(self.request.account, dict(serializer.validated_data))

    def create_row(self, account, data: dict):
        """Create in the resolved account; override to call the app's service."""
        return self.queryset.model.objects.create(account=account, **data)

    def update_row(self, instance, data: dict):
        for name, value in data.items():
            setattr(instance, name, value)
        instance.save()
        return instance

    def apply_filters(self, queryset):
        if self.filter_serializer_class is None:
            return queryset
        params = self.filter_serializer_class(data=self.request.query_params, context=self.get_serializer_context())
        params.is_valid(raise_exception=True)
        return params.filter(queryset)

    def ordering(self) -> tuple[str, ...]:
        raw = self.request.query_params.get("ordering")
        if not raw:
            return self.default_ordering
        terms = tuple(t.strip() for t in raw.split(",") if t.strip())
        allowed = set(self.ordering_fields)
        bad = [t for t in terms if t.lstrip("-") not in allowed]
        if bad or not terms:
            raise exceptions.ValidationError({"ordering": [f"Allowed: {', '.join(sorted(allowed))} (prefix - for descending)."]})
        return terms + ("-id",)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return Response(self.get_serializer(serializer.instance).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        instance = self.update_row(serializer.instance, dict(serializer.validated_data))
        return Response(self.get_serializer(instance).data)


class StrictSerializerMixin:
    """Unknown fields are a 400, so a typo or an attempt to set `account` never passes silently."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, f in self.fields.items() if not f.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
        return super().to_internal_value(data)


class AccountScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key chosen by id, looked up only among request.account's rows (else 'does not exist')."""

    def __init__(self, model, **kwargs):
        self.model = model
        super().__init__(**kwargs)

    def get_queryset(self):
        return self.model.objects.filter(account=self.context["request"].account)


class QueryFilter(serializers.Serializer):
    """List filters validated like a body (a bad value is a 400); LOOKUPS maps param -> ORM lookup."""

    LOOKUPS: dict[str, str] = {}

    def filter(self, queryset):
        return queryset.filter(**{self.LOOKUPS.get(k, k): v for k, v in self.validated_data.items()})


class JsonRefusalsMixin:
    """Refusals in the envelope's JSON whatever format the view renders (the schema's own renderers
    would write the error as YAML, the docs page's as HTML)."""

    def handle_exception(self, exc):
        self.request.accepted_renderer, self.request.accepted_media_type = EnvelopeRenderer(), "application/json"
        return super().handle_exception(exc)


class SchemaView(JsonRefusalsMixin, SpectacularAPIView):
    """/crm/schema/ for signed-in users and token scripts."""

    permission_classes = [permissions.IsAuthenticated]


class DocsView(JsonRefusalsMixin, SpectacularSwaggerView):
    """/crm/docs/: Swagger UI over /crm/schema/ (signed-in users; a forged write is the JSON 403)."""
