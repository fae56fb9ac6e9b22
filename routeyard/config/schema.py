"""The configuration schema: one YAML file, validated by these pydantic models.

Structure errors come from pydantic; cross-references (a decision naming an unknown model,
say) are checked in `references.py` so that every error is reported with its location.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from routeyard.config.catalog import Catalog
from routeyard.config.decision_handlers import (
    CollaborateConfig,
    EnsembleConfig,
    ExplorationConfig,
    ShadowConfig,
    one_multi_model_handler,
)
from routeyard.config.sessions import FeedbackConfig, SessionsConfig
from routeyard.config.signals import RuleTree, SignalsConfig
from routeyard.config.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, Strict


class Pricing(Strict):
    input_per_mtok: NonNegativeFloat = 0.0  # dollars per million prompt tokens
    output_per_mtok: NonNegativeFloat = 0.0  # dollars per million completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


# The GPUs whose figures routeyard/pool/energy.py knows (its GPUS table has these keys).
GpuName = Literal["H100", "A100", "L4", "B200"]


class EnergyConfig(Strict):
    """Joules per token (docs/routing.md, "Energy"): measured figures, or `gpu` + `params_b`
    from which routeyard/pool/energy.py estimates them. Exactly one of the two forms."""

    joules_per_input_token: NonNegativeFloat | None = None
    joules_per_output_token: NonNegativeFloat | None = None
    gpu: GpuName | None = None
    gpus: Annotated[int, Field(ge=1, le=1024)] = 1  # GPUs serving one replica
    params_b: PositiveFloat | None = None  # billions of (active) parameters
    # The estimate's assumptions, each overridable: sequences decoded together, achieved
    # shares of HBM bandwidth and of dense BF16 FLOP/s, and bytes per weight (2: BF16).
    batch: Annotated[float, Field(ge=1)] = 16.0
    bandwidth_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.7
    mfu: Annotated[float, Field(gt=0, le=1)] = 0.4
    bytes_per_param: PositiveFloat = 2.0

    @model_validator(mode="after")
    def _one_form(self) -> EnergyConfig:
        figures = (self.joules_per_input_token, self.joules_per_output_token)
        profile = (self.gpu, self.params_b)
        if any(v is not None for v in figures) and any(v is not None for v in profile):
            raise ValueError("give either joules_per_input_token and joules_per_output_token, "
                             "or gpu and params_b (an estimate), not both")
        if any(v is not None for v in figures):
            if None in figures:
                raise ValueError("give both joules_per_input_token and joules_per_output_token")
        elif None in profile:
            raise ValueError("give joules_per_input_token and joules_per_output_token, or gpu "
                             "(H100, A100, L4, B200) and params_b to estimate them")
        return self


class Capabilities(Strict):
    """What a model can do; a candidate that cannot serve a request is skipped."""

    tools: bool = False  # function / tool calls
    vision: bool = False  # image inputs
    reasoning: bool = False  # a reasoning effort or thinking budget
    structured_output: bool = False  # a JSON-schema response format
    # Token logprobs (`logprobs`, `top_logprobs`): a collaborate decision's small model must
    # declare it (its first-token entropy decides who writes each step).
    logprobs: bool = False


MetricsKind = Literal["auto", "vllm", "sglang", "tgi"]


class EndpointMetricsConfig(Strict):
    """Scrape this endpoint's own Prometheus metrics (docs/pool.md#backend-metrics); the block
    turns scraping on for the endpoint unless `enabled: false`."""

    enabled: bool = True
    kind: MetricsKind | None = None  # which server's metric names; None: the pool's default
    url: str | None = None  # None: the base_url's origin + /metrics

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class BackendMetricsConfig(Strict):
    """Pool-wide scraping of backends' own load metrics (waiting, running, KV-cache usage)."""

    enabled: bool = False  # scrape every endpoint; an endpoint's own `metrics:` block wins
    kind: MetricsKind = "auto"
    interval_s: PositiveFloat = 5.0  # readings older than 3 intervals are stale (ignored)
    timeout_s: PositiveFloat = 2.0
    # Saturated (tried after every other endpoint of its model): KV-cache usage at or above
    # this and more than `saturation_waiting` requests queued.
    saturation_kv_usage: Annotated[float, Field(gt=0, le=1)] = 0.98
    saturation_waiting: NonNegativeInt = 0


class EndpointConfig(Strict):
    name: str | None = None  # defaults to "<model>#<index>"
    base_url: str  # the OpenAI-style base, e.g. http://127.0.0.1:8000/v1
    provider: Literal["openai", "anthropic"] = "openai"
    api_key: SecretStr | None = None
    weight: PositiveFloat = 1.0
    upstream_model: str | None = None  # the id the backend expects; defaults to the model name
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)  # e.g. {"api-version": "2024-06-01"}
    auth_header: str = "authorization"  # "api-key" for Azure OpenAI
    # Ask streaming backends for a usage chunk (stream_options.include_usage). Turn off for
    # servers that reject stream_options; usage is then counted from the streamed text.
    stream_usage: bool = True
    # No first byte in this long: fail over before anything reaches the client (overrides the
    # model's own `ttft_timeout_ms`).
    ttft_timeout_ms: PositiveFloat | None = None
    # This endpoint's own energy figures (its hardware differs from the model's others).
    energy: EnergyConfig | None = None
    # Scrape the backend's own load metrics (None: as `pool.backend_metrics.enabled` says).
    metrics: EndpointMetricsConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class ModelConfig(Strict):
    name: Annotated[str, Field(min_length=1)]
    # chat: answers chat, messages, responses and completions requests; embedding: answers
    # /v1/embeddings only.
    kind: Literal["chat", "embedding"] = "chat"
    pricing: Pricing = Pricing()
    context_window: Annotated[int, Field(gt=0)] = 8192
    capabilities: Capabilities = Capabilities()
    # No first byte in this long (a stream's first chunk, a whole answer otherwise): fail over
    # to the next endpoint or candidate before anything reaches the client.
    ttft_timeout_ms: PositiveFloat | None = None
    # How this model can continue a partial answer when another backend broke off mid-stream:
    # `continue_final_message` (vLLM's flag), `prefill` (Anthropic's assistant prefill) or
    # `none`. Unset: by provider (anthropic: prefill; openai: none, since OpenAI itself
    # refuses the flag).
    continuation: Literal["continue_final_message", "prefill", "none"] | None = None
    # Joules per token, given or estimated (docs/routing.md, "Energy"); None: not counted.
    energy: EnergyConfig | None = None
    endpoints: Annotated[list[EndpointConfig], Field(min_length=1)]


class WhenConfig(Strict):
    """The shorthand rule form: every condition given must hold (AND). It is sugar for a
    keyword set and a context_length band (see decisions/engine.py)."""

    keywords_any: list[str] = Field(default_factory=list)  # case-insensitive whole words/phrases
    min_prompt_tokens: Annotated[int, Field(ge=0)] | None = None
    max_prompt_tokens: Annotated[int, Field(ge=0)] | None = None


class CandidateConfig(Strict):
    """A candidate with its own settings; a plain model name is the short form."""

    model: Annotated[str, Field(min_length=1)]
    # Sent as the request's `reasoning_effort` when this candidate answers (the Anthropic
    # adapter maps it onto a thinking budget). A client's own value is kept.
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


Candidate = Annotated[CandidateConfig, BeforeValidator(
    lambda value: {"model": value} if isinstance(value, str) else value)]


class PluginConfig(BaseModel):
    """`{type: NAME, ...options}`: the type is checked here against the catalog given in the
    validation context, the options when the Router is built (see routeyard/plugins)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    @field_validator("type")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        catalog: Catalog | None = (info.context or {}).get("catalog")
        if catalog is not None and value not in catalog.plugins:
            raise PydanticCustomError("unknown_plugin", "unknown plugin '{type}' (known: {known})",
                                      {"type": value, "known": ", ".join(sorted(catalog.plugins))})
        return value


def _cascade_out_of_algorithm_options(data: Any) -> Any:
    """`algorithm_options.cascade` (where earlier versions read a cascade) → `cascade`: a
    cascade runs several models, it is not an option of the selection algorithm."""
    if isinstance(data, dict) and isinstance(data.get("algorithm_options"), dict) \
            and "cascade" in data["algorithm_options"] and "cascade" not in data:
        options = dict(data["algorithm_options"])
        return {**data, "cascade": options.pop("cascade"), "algorithm_options": options}
    return data


class DecisionConfig(Strict):
    name: Annotated[str, Field(min_length=1)]
    priority: int = 0  # higher wins when several decisions match
    when: WhenConfig = WhenConfig()  # shorthand conditions, ANDed with `rules`
    rules: RuleTree | None = None  # a tree of all / any / not over family:name leaves
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    algorithm: str = "static"
    algorithm_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {artifact, lambda}
    fallback: list[str] = Field(default_factory=list)
    plugins: list[PluginConfig] = Field(default_factory=list)  # run in order, see plugins.md
    # {models, probes, agreement, ...}: ask cheap models first (checked when the Router is
    # built, see serving/cascade.py).
    cascade: dict[str, Any] | None = None
    exploration: ExplorationConfig | None = None
    shadow: ShadowConfig | None = None
    ensemble: EnsembleConfig | None = None
    collaborate: CollaborateConfig | None = None

    _migrate = model_validator(mode="before")(_cascade_out_of_algorithm_options)
    _one_handler = model_validator(mode="before")(one_multi_model_handler)


class DefaultDecisionConfig(Strict):
    name: str = "default"
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    algorithm: str = "static"
    algorithm_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {artifact, lambda}
    fallback: list[str] = Field(default_factory=list)
    plugins: list[PluginConfig] = Field(default_factory=list)  # run in order, see plugins.md
    cascade: dict[str, Any] | None = None  # as for decisions
    exploration: ExplorationConfig | None = None
    shadow: ShadowConfig | None = None
    ensemble: EnsembleConfig | None = None
    collaborate: CollaborateConfig | None = None

    _migrate = model_validator(mode="before")(_cascade_out_of_algorithm_options)
    _one_handler = model_validator(mode="before")(one_multi_model_handler)


class RetryConfig(Strict):
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2  # per endpoint, after the first try
    backoff_base_s: NonNegativeFloat = 0.05
    backoff_max_s: NonNegativeFloat = 2.0
    max_retry_after_s: NonNegativeFloat = 5.0  # a longer retry-after fails over instead


class TimeoutConfig(Strict):
    connect_s: PositiveFloat = 5.0
    per_try_s: PositiveFloat = 60.0  # whole response (non-streaming) or first byte (streaming)
    total_s: PositiveFloat = 180.0  # across every retry and failover
    stream_idle_s: PositiveFloat = 60.0  # longest silence between two chunks


class BreakerConfig(Strict):
    failure_threshold: Annotated[int, Field(ge=1)] = 5  # consecutive failures that open it
    cooldown_s: NonNegativeFloat = 10.0  # open time before one probe request is let through


class HealthCheckConfig(Strict):
    interval_s: NonNegativeFloat = 15.0  # 0 disables active checks
    timeout_s: PositiveFloat = 2.0


class PoolConfig(Strict):
    retry: RetryConfig = RetryConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    breaker: BreakerConfig = BreakerConfig()
    health_check: HealthCheckConfig = HealthCheckConfig()
    backend_metrics: BackendMetricsConfig = BackendMetricsConfig()
    max_connections: Annotated[int, Field(ge=1)] = 1000


class StateConfig(Strict):
    # The durable store: the decision log, keys, stored responses, learned state.
    backend: str = "sqlite"
    path: str | None = None  # SQLite file; defaults to $XDG_STATE_HOME/routeyard/routeyard.db
    # Redis: the store itself with `backend: redis`; beside another backend, the shared hot
    # state of several replicas (rate limits and budget counters).
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0
    postgres_url: SecretStr | None = None  # e.g. postgresql://user@127.0.0.1:5432/routeyard
    key_prefix: str = "routeyard"
    max_records: Annotated[int, Field(ge=1)] | None = None
    # Days a decision record is kept; older ones are deleted in the background (None: kept
    # until max_records pushes them out; Redis keeps them 7 days unless this is set).
    retention_days: PositiveFloat | None = None
    # Keep the prompt and the answer in the decision record (after the pii_redact plugin's
    # redaction, when it runs). Off by default: the log then holds no request text.
    log_content: bool = False
    # /v1/stats' savings: what the traffic would have cost on this model (at its pricing)
    # instead of on the dearest candidate of each request's decision.
    savings_reference: str | None = None


class ResponsesConfig(Strict):
    """The /v1/responses surface's stored responses (`store: true`, `previous_response_id`)."""

    # How long a stored response stays retrievable and chainable (OpenAI keeps them 30 days).
    ttl_s: PositiveFloat = 30 * 24 * 3600.0


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # 64 MiB: room for several base64 photos; OpenAI takes vision requests of up to 50 MB.
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    api_keys: list[SecretStr] = Field(default_factory=list)  # empty: no client auth
    # Static keys with the `admin` role (manage virtual keys through /admin); with any static
    # key configured, every request needs a key.
    admin_keys: list[SecretStr] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds between checks of the config file for changes (0: reload on SIGHUP only).
    watch_config_s: NonNegativeFloat = 1.0
    # On SIGTERM: keep serving (unready) this long before refusing connections, so a load
    # balancer sees /readyz fail first.
    drain_delay_s: NonNegativeFloat = 0.0
    # Then let running requests and streams finish for this long; streams still open after it
    # end with an SSE error event. LLM streams run for minutes: set the orchestrator's kill
    # timeout (Kubernetes' terminationGracePeriodSeconds) above drain_delay_s + this.
    shutdown_grace_s: NonNegativeFloat = 300.0
    # `routeyard serve` collects the youngest generation of cyclic garbage after this many
    # allocations (Python's default: 700), after freezing what startup built; 0 keeps
    # Python's defaults. See docs/configuration.md.
    gc_young_threshold: NonNegativeInt = 50_000

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _no_empty_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        # An empty key (say, an unset ${VAR:-}) would let requests without a key through.
        if any(not key.get_secret_value().strip() for key in keys):
            raise ValueError("API keys must not be empty")
        return keys


class BudgetConfig(Strict):
    """Dollars per UTC day, per UTC month or in total. `hard`: refuse once spent (429
    budget_exceeded); `soft`: steer routing to cheaper candidates as it drains."""

    period: Literal["day", "month", "total"]
    limit_usd: PositiveFloat
    mode: Literal["hard", "soft"] = "hard"


class LimitsConfig(Strict):
    """What one key (or all of a tenant's keys together) may use; unset: unlimited."""

    rpm: Annotated[int, Field(ge=1)] | None = None  # requests in any sliding 60 s
    tpm: Annotated[int, Field(ge=1)] | None = None  # prompt + completion tokens in any 60 s
    max_parallel: Annotated[int, Field(ge=1)] | None = None  # requests in flight at once
    budgets: Annotated[list[BudgetConfig], Field(max_length=6)] = Field(default_factory=list)

    @field_validator("budgets")
    @classmethod
    def _one_per_period_and_mode(cls, budgets: list[BudgetConfig]) -> list[BudgetConfig]:
        pairs = [(b.period, b.mode) for b in budgets]
        if len(pairs) != len(set(pairs)):
            raise ValueError("at most one budget per (period, mode)")
        return budgets

    @property
    def counted(self) -> bool:
        """Whether admission must count anything (a limit or a budget is set)."""
        return bool(self.rpm or self.tpm or self.max_parallel or self.budgets)


class GatewayConfig(Strict):
    """Virtual keys, rate limits and budgets (docs/api.md, "Gateway: keys, limits, budgets")."""

    # How long a replica trusts its copy of a key: a revoked or expired key is refused by
    # every replica within this many seconds.
    key_cache_s: Annotated[float, Field(gt=0, le=5)] = 2.0
    # With state.redis_url set, limits are counted in Redis. When it cannot be reached:
    # fail_open lets requests through uncounted, fail_closed refuses them (503).
    on_redis_down: Literal["fail_open", "fail_closed"] = "fail_open"
    redis_timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    # A concurrency slot (and a hard budget's reservation) of a replica that died mid-request
    # is freed after this long.
    slot_lease_s: Annotated[float, Field(ge=10)] = 900.0
    # Limits and budgets of each key of server.api_keys and server.admin_keys.
    static_key_limits: LimitsConfig = LimitsConfig()


class TracingConfig(Strict):
    """OpenTelemetry traces of each request (docs/configuration.md, "tracing"): off by default;
    needs the `otel` extra (`pip install 'routeyard[otel]'`)."""

    enabled: bool = False
    # The OTLP/HTTP traces URL; None: the exporter's own default (OTEL_EXPORTER_OTLP_*
    # environment variables, else http://localhost:4318/v1/traces).
    endpoint: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)  # sent with each export (auth)
    # The share of new traces kept; a request carrying a `traceparent` follows its sampled flag.
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    service_name: str = "routeyard"
    resource_attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)
    export_timeout_s: PositiveFloat = 10.0

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (OTLP over HTTP)")
        return value


class ModelRoute(Strict):
    """Requests naming a model that matches `match` (a glob such as `claude-*`) are routed:
    to `decision` when given, else through the decisions as for an alias. Lets agents keep
    their default model names (Claude Code asks for `claude-...`)."""

    match: Annotated[str, Field(min_length=1)]
    decision: str | None = None


class RouteyardConfig(Strict):
    server: ServerConfig = ServerConfig()
    models: Annotated[list[ModelConfig], Field(min_length=1)]
    aliases: list[str] = Field(default_factory=lambda: ["auto"])
    # Other model names that are routed (first match wins); see ModelRoute.
    model_routes: list[ModelRoute] = Field(default_factory=list)
    # false: clients must use an alias, so every request goes through the decisions (a privacy
    # or tenant rule cannot be sidestepped by naming a model).
    allow_direct_models: bool = True
    signals: SignalsConfig = SignalsConfig()
    decisions: list[DecisionConfig] = Field(default_factory=list)
    # priority: the matching decision with the highest priority wins; confidence: the one whose
    # rule holds with the highest confidence (priority breaks ties).
    decision_strategy: Literal["priority", "confidence"] = "priority"
    default: DefaultDecisionConfig | None = None  # None: the first model
    pool: PoolConfig = PoolConfig()
    state: StateConfig = StateConfig()
    responses: ResponsesConfig = ResponsesConfig()
    gateway: GatewayConfig = GatewayConfig()
    tracing: TracingConfig = TracingConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    sessions: SessionsConfig = SessionsConfig()
