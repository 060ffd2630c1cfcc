"""Keys, endpoints and timeouts, from the environment or code; model-name resolution.

Precedence, strongest first: arguments given in code, the process environment, a ``.env``
file (only when asked for with ``load_dotenv=True``). Reading a ``.env`` file never writes
to ``os.environ``: the values stay inside the :class:`Settings` object, so one process can
hold several configurations side by side.

API keys are ``pydantic.SecretStr``: they print as ``'**********'`` in reprs, logs and
error messages, and only the adapters call ``get_secret_value()`` to build a header.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import describe_validation_error

__all__ = ["PROVIDER_NAMES", "ModelName", "Settings", "parse_model_name"]

#: Provider names accepted before the colon of ``"provider:model"``.
PROVIDER_NAMES: Final = ("openai", "anthropic", "gemini", "xai", "ollama", "openai-compatible")

_PROVIDER_ALIASES: Final = {
    "google": "gemini",
    "grok": "xai",
    "openai_compatible": "openai-compatible",
    "compatible": "openai-compatible",
}

# Environment variable -> Settings field. Two variables may feed one field: the first set wins.
_ENV_FIELDS: Final = (
    ("OPENAI_API_KEY", "openai_api_key"),
    ("OPENAI_BASE_URL", "openai_base_url"),
    ("ANTHROPIC_API_KEY", "anthropic_api_key"),
    ("ANTHROPIC_BASE_URL", "anthropic_base_url"),
    ("GOOGLE_API_KEY", "google_api_key"),
    ("GEMINI_API_KEY", "google_api_key"),
    ("GEMINI_BASE_URL", "gemini_base_url"),
    ("XAI_API_KEY", "xai_api_key"),
    ("XAI_BASE_URL", "xai_base_url"),
    ("OLLAMA_HOST", "ollama_host"),
    ("OPENAI_COMPATIBLE_BASE_URL", "openai_compatible_base_url"),
    ("OPENAI_COMPATIBLE_API_KEY", "openai_compatible_api_key"),
    ("RLM_ASYNC_CONNECT_TIMEOUT", "connect_timeout"),
    ("RLM_ASYNC_READ_TIMEOUT", "read_timeout"),
    ("RLM_ASYNC_TRANSPORT", "transport"),
    ("RLM_ASYNC_HTTP2", "http2"),
)

# provider -> (key field, env var to name in errors, key required?)
_KEYS: Final = {
    "openai": ("openai_api_key", "OPENAI_API_KEY", True),
    "anthropic": ("anthropic_api_key", "ANTHROPIC_API_KEY", True),
    "gemini": ("google_api_key", "GOOGLE_API_KEY (or GEMINI_API_KEY)", True),
    "xai": ("xai_api_key", "XAI_API_KEY", True),
    "ollama": (None, None, False),
    "openai-compatible": ("openai_compatible_api_key", "OPENAI_COMPATIBLE_API_KEY", False),
}

DEFAULT_BASE_URLS: Final = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "xai": "https://api.x.ai/v1",
    "ollama": "http://localhost:11434",
}


class Settings(BaseModel):
    """Provider keys, endpoints, HTTP timeouts and transport.

    Build it from the environment with :meth:`from_env`, or directly in code
    (``Settings(openai_api_key="sk-...")``); plain strings are accepted for keys.

    Attributes:
        connect_timeout: Seconds to open a connection.
        read_timeout: Seconds to wait for the next bytes of a reply (long: reasoning
            models can think for minutes before the first byte).
        transport: What carries the requests under httpx: ``"aiohttp"`` (the default: the
            least CPU per request at high concurrency) or ``"httpcore"`` (httpx's own; the
            one for HTTP/2). ``None``: aiohttp, or httpcore when ``http2`` is set.
        http2: Offer HTTP/2 (on httpcore; needs ``pip install "rlm-async[http2]"``).
        prices: Extra or corrected model prices, laid over the built-in table (see
            :class:`~rlm_async.PriceTable` for the key and value forms), e.g.
            ``{"openai-compatible:my-llama": (0.1, 0.2)}``.

    Raises:
        ConfigurationError: a value of the wrong type or out of range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    google_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    xai_api_key: SecretStr | None = None
    xai_base_url: str | None = None
    ollama_host: str | None = None
    openai_compatible_base_url: str | None = None
    openai_compatible_api_key: SecretStr | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=600.0, gt=0)
    transport: Literal["aiohttp", "httpcore"] | None = None
    http2: bool = False
    prices: dict[str, Any] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(
                describe_validation_error("settings", exc, type(self).model_fields)
            ) from None
        if self.http2 or self.transport:
            from rlm_async.providers._transport import resolve_transport

            resolve_transport(self.transport, http2=self.http2)  # HTTP/2 on aiohttp fails here
        if self.prices:
            from rlm_async.providers._pricing import PriceTable

            PriceTable(self.prices)  # malformed prices fail here, not at the first call

    @classmethod
    def from_env(
        cls,
        *,
        load_dotenv: bool = False,
        dotenv_path: str | None = None,
        **overrides: Any,
    ) -> Settings:
        """Read settings from the environment (and a ``.env`` file when asked).

        Args:
            load_dotenv: Also read a ``.env`` file (``dotenv_path``, else the nearest one
                from the working directory up). The environment wins over the file.
            dotenv_path: The ``.env`` file to read; implies ``load_dotenv``.
            **overrides: Field values that win over both, e.g. ``openai_api_key="sk-..."``.
                ``None`` values are ignored (they mean "not given").

        Raises:
            ConfigurationError: an unknown field name or an invalid value.
        """
        source: dict[str, str] = {}
        if load_dotenv or dotenv_path is not None:
            source.update(_read_dotenv(dotenv_path))
        source.update(os.environ)
        values: dict[str, Any] = {}
        for variable, field in _ENV_FIELDS:
            value = source.get(variable, "").strip()
            if value and field not in values:
                values[field] = value
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(cls.model_fields))}"
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def api_key(self, provider: str) -> str | None:
        """The key for ``provider``, or ``None`` where none is needed.

        Raises:
            ConfigurationError: the provider needs a key and none is configured; the
                message names the environment variable to set.
        """
        field, variable, required = _KEYS[provider]
        secret: SecretStr | None = getattr(self, field) if field else None
        if secret is not None and secret.get_secret_value():
            return secret.get_secret_value()
        if required:
            raise ConfigurationError(
                f"no API key for {provider}: set {variable} in the environment, or in a .env "
                f"file (the rlm-async command reads it; in code, RLM(load_dotenv=True)), or "
                f"pass Settings({field}=...)"
            )
        return None

    def base_url(self, provider: str) -> str:
        """The base URL for ``provider``, from the settings or the provider's default.

        Raises:
            ConfigurationError: ``openai-compatible`` without a base URL.
        """
        if provider == "openai-compatible":
            if not self.openai_compatible_base_url:
                raise ConfigurationError(
                    "openai-compatible models need a server: set OPENAI_COMPATIBLE_BASE_URL "
                    "(e.g. http://localhost:8000/v1 for vLLM) or pass "
                    "Settings(openai_compatible_base_url=...)"
                )
            return self.openai_compatible_base_url.rstrip("/")
        if provider == "ollama":
            return _ollama_url(self.ollama_host or DEFAULT_BASE_URLS["ollama"])
        configured: str | None = getattr(self, f"{provider}_base_url")
        return (configured or DEFAULT_BASE_URLS[provider]).rstrip("/")


def _read_dotenv(path: str | None) -> dict[str, str]:
    from dotenv import dotenv_values, find_dotenv

    if path is None:
        path = find_dotenv(usecwd=True)
        if not path:
            return {}
    elif not os.path.isfile(path):
        raise ConfigurationError(f"dotenv_path {path!r} is not a file")
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _ollama_url(host: str) -> str:
    # OLLAMA_HOST is often written as the server binds it: "0.0.0.0:11434" or "myhost".
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = f"http://{host}"
    scheme, _, rest = host.partition("://")
    hostport, slash, path = rest.partition("/")
    if hostport.startswith("0.0.0.0"):
        hostport = "127.0.0.1" + hostport[len("0.0.0.0") :]
    if not re.search(r":\d+$", hostport) and not hostport.endswith("]"):
        hostport += ":11434" if scheme == "http" else ":443"
    return f"{scheme}://{hostport}{slash}{path}".rstrip("/")


# ---- model names -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelName:
    """A model name resolved to its provider and the model id sent on the wire."""

    provider: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


_BARE_PREFIXES: Final = (
    # Open-weights names first: "gpt-oss" is served by Ollama, not by OpenAI's API.
    (re.compile(r"gpt-oss\b"), "ollama"),
    (re.compile(r"(gpt-|chatgpt-|o\d(\b|-)|text-|davinci|babbage|codex-|computer-use-)"), "openai"),
    (re.compile(r"claude-"), "anthropic"),
    (re.compile(r"(models/)?(gemini-|gemma-|learnlm-)"), "gemini"),
    (re.compile(r"grok-"), "xai"),
    (
        re.compile(
            r"(llama|codellama|qwen|qwq|mistral|mixtral|phi\d|deepseek|gemma\d|smollm|granite"
            r"|olmo|tinyllama|nomic|command-r|starcoder|llava|magistral|devstral)"
        ),
        "ollama",
    ),
)


def parse_model_name(name: str) -> ModelName:
    """Resolve a model name to a provider and a wire model id.

    ``"provider:model"`` always works. Bare names are inferred the way people write them:
    ``gpt-*``, ``o1``/``o3``/``o4*``, ``chatgpt-*`` → openai; ``claude-*`` → anthropic;
    ``gemini-*`` → gemini; ``grok-*`` → xai; a name with an Ollama tag such as
    ``gpt-oss:20b`` or ``llama3.1:8b`` (and common open-weights families) → ollama.

    Raises:
        ConfigurationError: the provider cannot be told from the name; the message shows
            how to spell it.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a model name must be a non-empty string, got {name!r}")
    name = name.strip()
    prefix, colon, rest = name.partition(":")
    provider = _PROVIDER_ALIASES.get(prefix.lower(), prefix.lower())
    if colon and provider in PROVIDER_NAMES:
        if not rest:
            raise ConfigurationError(f"model name {name!r} has no model after '{prefix}:'")
        if provider == "gemini":
            rest = rest.removeprefix("models/")
        return ModelName(provider, rest)
    if colon and prefix == "ft":  # OpenAI fine-tunes: "ft:gpt-4o-mini:org::id"
        return ModelName("openai", name)
    if colon:
        # "name:tag" is Ollama's spelling; but "openia:gpt-5" is a typo, not a local model
        # to wait ten seconds of retries for.
        close = _misspelt_provider(prefix.lower())
        if close is not None:
            raise ConfigurationError(
                f"unknown provider {prefix!r} in model name {name!r}; did you mean "
                f"'{close}:{rest}'? (For an Ollama model really named so, write "
                f"'ollama:{name}'.)"
            )
        return ModelName("ollama", name)
    lowered = name.lower()
    for pattern, inferred in _BARE_PREFIXES:
        if pattern.match(lowered):
            if inferred == "gemini":
                name = name.removeprefix("models/")
            return ModelName(inferred, name)
    raise ConfigurationError(
        f"cannot tell which provider serves model {name!r}; write it as 'provider:model', "
        f"e.g. 'openai:{name}', 'anthropic:{name}', 'gemini:{name}', 'xai:{name}', "
        f"'ollama:{name}', or 'openai-compatible:{name}' (with OPENAI_COMPATIBLE_BASE_URL set)"
    )


def _misspelt_provider(prefix: str) -> str | None:
    """The provider ``prefix`` is one slip away from (two for long names), if any.

    Tight on purpose: Ollama model names are free-form ("codellama", "llama3", "openchat"),
    and only a near miss of a hosted provider's name is more likely a typo than a model.
    Not "ollama" itself (a near miss of it, such as "llama3", is an Ollama model, and
    Ollama is where unknown prefixes go anyway), nor "grok" (one slip from "groq", another
    provider). Short names must keep their length ("xia", not "mxai").
    """
    candidates = [p for p in PROVIDER_NAMES if p != "ollama"]
    candidates += [a for a in _PROVIDER_ALIASES if a != "grok"]
    for known in candidates:
        if len(known) < 5:
            near = len(prefix) == len(known) and _edit_distance(prefix, known) == 1
        else:
            near = 0 < _edit_distance(prefix, known) <= (1 if len(prefix) <= 5 else 2)
        if near:
            return _PROVIDER_ALIASES.get(known, known)
    return None


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance with adjacent transpositions counted as one edit."""
    if abs(len(a) - len(b)) > 2:
        return 3  # more than any caller allows
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]
