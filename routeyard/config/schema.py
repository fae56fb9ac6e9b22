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
from routeyard.config.signals import RuleTree, SignalsConfig

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    # Unknown keys are errors: a typo such as `fallbak:` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pricing(Strict):
    input_per_mtok: NonNegativeFloat = 0.0  # dollars per million prompt tokens
    output_per_mtok: NonNegativeFloat = 0.0  # dollars per million completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class Capabilities(Strict):
    """What a model can do; a candidate that cannot serve a request is skipped."""

    tools: bool = False  # function / tool calls
    vision: bool = False  # image inputs
    reasoning: bool = False  # a reasoning effort or thinking budget
    structured_output: bool = False  # a JSON-schema response format
    # Token logprobs (`logprobs`, `top_logprobs`): a collaborate decision's small model must
    # declare it (its first-token entropy decides who writes each step).
    logprobs: bool = False


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


class ExplorationConfig(Strict):
    """Exploration with logged propensities (docs/learning.md): with probability `epsilon` a
    uniform draw over the servable candidates, or a softmax over the algorithm's scores at
    `temperature`. Exactly one of the two."""

    epsilon: Annotated[float, Field(gt=0, le=1)] | None = None
    temperature: PositiveFloat | None = None
    # What explored requests (those whose model differs from the algorithm's own choice)
    # may spend per UTC day, per replica; past it the decision stops exploring until midnight.
    max_daily_usd: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ExplorationConfig:
        if (self.epsilon is None) == (self.temperature is None):
            raise ValueError("give exactly one of epsilon or temperature")
        return self


class ShadowConfig(Strict):
    """Mirror a sample of a decision's requests to a candidate model after the client's
    answer is sent, and score the two answers (docs/learning.md)."""

    model: Annotated[str, Field(min_length=1)]
    sample: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_daily_usd: NonNegativeFloat | None = None  # per UTC day, per replica
    # judge: a pool model compares the two answers pairwise; exact, numeric, choice: the two
    # answers are compared with a reference answer when the request carries one.
    scorer: Literal["judge", "exact", "numeric", "choice"] = "judge"
    judge: str | None = None  # the judge's model (required with scorer: judge)
    timeout_s: PositiveFloat = 60.0

    @model_validator(mode="after")
    def _judge_named(self) -> ShadowConfig:
        if self.scorer == "judge" and not self.judge:
            raise ValueError("scorer 'judge' needs a judge model")
        return self


class EnsembleConfig(Strict):
    """Several models answer one request and one answer is made of theirs (docs/ensembles.md).
    Members are named, or the top `top_k` candidates of the decision's algorithm."""

    members: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    top_k: Annotated[int, Field(ge=2, le=8)] | None = None
    aggregate: Literal["vote", "rank", "synthesise", "synthesize"] = "vote"
    # vote: how answers are compared (auto: a choice letter, else a number, else the text,
    # else embedding clusters of free text).
    normalise: Literal["auto", "choice", "number", "exact", "embedding"] = "auto"
    similarity: Annotated[float, Field(gt=0, le=1)] = 0.85  # embedding clusters (vote)
    judge: str | None = None  # rank and synthesise
    member_timeout_s: PositiveFloat = 60.0
    max_members: Annotated[int, Field(ge=2, le=8)] = 5

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleConfig:
        if bool(self.members) == (self.top_k is not None):
            raise ValueError("give exactly one of members or top_k")
        if self.members and len(self.members) < 2:
            raise ValueError("an ensemble needs at least two members")
        if len(self.members) > self.max_members:
            raise ValueError(f"{len(self.members)} members is more than max_members "
                             f"({self.max_members})")
        if self.aggregate != "vote" and not self.judge:
            raise ValueError(f"aggregate '{self.aggregate}' needs a judge model")
        return self


class CollaborateConfig(Strict):
    """Step-level collaboration (docs/ensembles.md): the small model drafts each reasoning
    step; when its first token's entropy is above the threshold, the large model writes it."""

    small: Annotated[str, Field(min_length=1)]
    large: Annotated[str, Field(min_length=1)]
    entropy_threshold: NonNegativeFloat = 1.0  # nats, over the first token's top_logprobs
    step_marker: Annotated[str, Field(min_length=1)] = "\n\n"  # where a step ends
    top_logprobs: Annotated[int, Field(ge=1, le=20)] = 5
    max_steps: Annotated[int, Field(ge=1, le=256)] = 32
    max_step_tokens: Annotated[int, Field(ge=1)] = 512


def _one_multi_model_handler(data: Any) -> Any:
    """A decision runs at most one of cascade, ensemble and collaborate."""
    if isinstance(data, dict):
        given = [k for k in ("cascade", "ensemble", "collaborate") if data.get(k) is not None]
        if len(given) > 1:
            raise PydanticCustomError("multi_model", "a decision runs at most one of cascade, "
                                      "ensemble and collaborate, not {given}",
                                      {"given": " and ".join(given)})
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
    _one_handler = model_validator(mode="before")(_one_multi_model_handler)


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
    _one_handler = model_validator(mode="before")(_one_multi_model_handler)


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


class ImplicitFeedbackConfig(Strict):
    """Negative feedback inferred from behaviour (docs/learning.md); each kind off by default.
    Implicit feedback is marked as such in the log, so estimators can include or exclude it."""

    # The same caller sends a near-identical prompt within the window: the earlier answer
    # gets `reward`.
    regeneration: bool = False
    regeneration_window_s: PositiveFloat = 300.0
    # 0.9 is too low for the bundled static embedding: "the capital of France?" and "... of
    # Germany?" score 0.908 (docs/learning.md).
    regeneration_similarity: Annotated[float, Field(gt=0, le=1)] = 0.95
    # The client leaves a stream before `abandoned_max_tokens` tokens of the answer.
    abandoned_streams: bool = False
    abandoned_max_tokens: Annotated[int, Field(ge=1)] = 20
    reward: Annotated[float, Field(ge=0, le=1)] = 0.0


class FeedbackConfig(Strict):
    implicit: ImplicitFeedbackConfig = ImplicitFeedbackConfig()


# Spent fraction → pressure toward cheaper candidates and lower effort (docs/sessions.md).
DEFAULT_BUDGET_CURVE: tuple[tuple[float, float], ...] = ((0.5, 0.0), (0.8, 0.5), (1.0, 1.0))


class SessionBudgetConfig(Strict):
    """A budget per session, per task (a session's `x-task-id` / `metadata.task_id`) or per
    key, in dollars, tokens or steps (requests), that degrades routing as it drains and
    refuses (429 `budget_exceeded`) only once it is spent."""

    scope: Literal["session", "task", "key"] = "session"
    kind: Literal["usd", "tokens", "steps"] = "usd"
    limit: PositiveFloat
    # Points (spent fraction, pressure), both in [0, 1], fractions increasing; linear between
    # them, 0 before the first, the last's pressure after it.
    curve: list[tuple[float, float]] = Field(
        default_factory=lambda: list(DEFAULT_BUDGET_CURVE))

    @model_validator(mode="after")
    def _curve_in_range(self) -> SessionBudgetConfig:
        if not self.curve:
            raise ValueError("curve needs at least one [spent_fraction, pressure] point")
        previous = -1.0
        for fraction, pressure in self.curve:
            if not (0.0 <= fraction <= 1.0 and 0.0 <= pressure <= 1.0):
                raise ValueError("curve points are [spent_fraction, pressure], each in [0, 1]")
            if fraction <= previous:
                raise ValueError("curve fractions must increase")
            previous = fraction
        return self


class SessionsConfig(Strict):
    """Agent sessions (docs/sessions.md): what a session's state keeps lives in the store under
    `session:<id>:<part>`, and expires after `idle_ttl_s` without a request."""

    idle_ttl_s: PositiveFloat = 3600.0
    # Keep a session on the endpoint that served it last (its prefix cache stays warm), while
    # that endpoint is available and has at most `affinity_max_extra_in_flight` more weighted
    # requests in flight than the least-loaded one of its model.
    endpoint_affinity: bool = False
    affinity_max_extra_in_flight: NonNegativeInt = 8
    budgets: list[SessionBudgetConfig] = Field(default_factory=list)
    # Keep each session's state (and log its id) even without budgets; budgets imply it.
    track: bool = False


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
