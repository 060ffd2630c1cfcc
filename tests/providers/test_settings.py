"""Settings: environment, .env files, precedence, secrets; model-name resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlm_async._exceptions import ConfigurationError
from rlm_async.providers._settings import ModelName, Settings, parse_model_name


def test_from_env_reads_keys_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("XAI_BASE_URL", "https://xai.proxy/v1")
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box:11434")
    settings = Settings.from_env()
    assert settings.api_key("openai") == "sk-env"
    assert settings.base_url("xai") == "https://xai.proxy/v1"
    assert settings.base_url("ollama") == "http://gpu-box:11434"


def test_gemini_api_key_is_accepted_when_google_api_key_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gem-key")
    assert Settings.from_env().api_key("gemini") == "gem-key"


def test_google_api_key_wins_over_gemini_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gem-key")
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    assert Settings.from_env().api_key("gemini") == "google-key"


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    settings = Settings.from_env(openai_api_key="sk-code", read_timeout=5)
    assert settings.api_key("openai") == "sk-code"
    assert settings.read_timeout == 5


def test_none_overrides_mean_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert Settings.from_env(openai_api_key=None).api_key("openai") == "sk-env"


def test_unknown_override_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="openai_key"):
        Settings.from_env(openai_key="x")


def test_invalid_timeout_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_ASYNC_READ_TIMEOUT", "-3")
    with pytest.raises(ConfigurationError, match="read_timeout"):
        Settings.from_env()


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "  ")
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        Settings.from_env().api_key("openai")


def test_dotenv_is_read_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-dotenv\n")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().anthropic_api_key is None
    assert Settings.from_env(load_dotenv=True).api_key("anthropic") == "sk-ant-dotenv"


def test_dotenv_does_not_modify_os_environ(tmp_path: Path) -> None:
    path = tmp_path / "custom.env"
    path.write_text("XAI_API_KEY=xai-dotenv\n")
    settings = Settings.from_env(dotenv_path=str(path))
    assert settings.api_key("xai") == "xai-dotenv"
    assert "XAI_API_KEY" not in os.environ


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / ".env"
    path.write_text("XAI_API_KEY=xai-dotenv\n")
    monkeypatch.setenv("XAI_API_KEY", "xai-env")
    assert Settings.from_env(dotenv_path=str(path)).api_key("xai") == "xai-env"


def test_missing_dotenv_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a file"):
        Settings.from_env(dotenv_path=str(tmp_path / "nope.env"))


def test_keys_never_appear_in_repr_or_str() -> None:
    settings = Settings(openai_api_key="sk-secret-value", xai_api_key="xai-secret-value")
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "sk-secret-value" not in text
        assert "xai-secret-value" not in text


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("gemini", "GOOGLE_API_KEY"),
        ("xai", "XAI_API_KEY"),
    ],
)
def test_missing_key_error_names_the_variable_to_set(provider: str, variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Settings().api_key(provider)


def test_ollama_and_openai_compatible_need_no_key() -> None:
    settings = Settings(openai_compatible_base_url="http://localhost:8000/v1")
    assert settings.api_key("ollama") is None
    assert settings.api_key("openai-compatible") is None


def test_openai_compatible_without_base_url_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_COMPATIBLE_BASE_URL"):
        Settings().base_url("openai-compatible")


def test_default_base_urls_are_the_public_endpoints() -> None:
    settings = Settings()
    assert settings.base_url("openai") == "https://api.openai.com/v1"
    assert settings.base_url("anthropic") == "https://api.anthropic.com"
    assert settings.base_url("gemini") == "https://generativelanguage.googleapis.com"
    assert settings.base_url("xai") == "https://api.x.ai/v1"
    assert settings.base_url("ollama") == "http://localhost:11434"


def test_base_url_trailing_slash_is_dropped() -> None:
    assert Settings(openai_base_url="https://proxy/v1/").base_url("openai") == "https://proxy/v1"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("http://localhost:9999/", "http://localhost:9999"),
    ],
)
def test_ollama_host_is_normalised_the_way_ollama_writes_it(host: str, url: str) -> None:
    assert Settings(ollama_host=host).base_url("ollama") == url


@pytest.mark.parametrize(
    ("name", "provider", "model"),
    [
        ("gpt-5", "openai", "gpt-5"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("o3-mini", "openai", "o3-mini"),
        ("o1", "openai", "o1"),
        ("o4-mini", "openai", "o4-mini"),
        ("chatgpt-4o-latest", "openai", "chatgpt-4o-latest"),
        ("ft:gpt-4o-mini:acme::abc123", "openai", "ft:gpt-4o-mini:acme::abc123"),
        ("claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("gemini-2.5-pro", "gemini", "gemini-2.5-pro"),
        ("models/gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("grok-4", "xai", "grok-4"),
        ("gpt-oss:20b", "ollama", "gpt-oss:20b"),
        ("llama3.1:8b", "ollama", "llama3.1:8b"),
        ("llama3.1", "ollama", "llama3.1"),
        ("qwen3", "ollama", "qwen3"),
    ],
)
def test_bare_names_are_inferred_as_people_write_them(name: str, provider: str, model: str) -> None:
    assert parse_model_name(name) == ModelName(provider, model)


@pytest.mark.parametrize(
    ("name", "provider", "model"),
    [
        ("openai:gpt-5", "openai", "gpt-5"),
        ("anthropic:claude-opus-4-1", "anthropic", "claude-opus-4-1"),
        ("gemini:gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("google:gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("xai:grok-3-mini", "xai", "grok-3-mini"),
        ("ollama:gpt-oss:20b", "ollama", "gpt-oss:20b"),
        ("openai-compatible:my-model", "openai-compatible", "my-model"),
        ("openai:some-future-model", "openai", "some-future-model"),
    ],
)
def test_provider_prefix_always_wins(name: str, provider: str, model: str) -> None:
    spec = parse_model_name(name)
    assert spec == ModelName(provider, model)
    assert spec.label == f"{provider}:{model}"


def test_unknown_name_error_shows_how_to_spell_it() -> None:
    with pytest.raises(ConfigurationError, match="'openai-compatible:mystery-model'"):
        parse_model_name("mystery-model")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("openia:gpt-5", "'openai:gpt-5'"),
        ("antropic:claude-sonnet-4-5", "'anthropic:claude-sonnet-4-5'"),
        ("xia:grok-4", "'xai:grok-4'"),
        ("openai-compatibel:m", "'openai-compatible:m'"),
    ],
)
def test_a_misspelt_provider_is_an_error_not_an_ollama_model(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigurationError, match=f"did you mean {suggestion}"):
        parse_model_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "codellama:7b", "openchat:7b", "gemma:2b", "groq:llama3", "aya:8b", "tinyllama:1b",
        "llama3:8b", "llama3:latest", "llama2:13b", "llama:7b", "llama4:scout", "mxai:x",
        "olama:llama3",
    ],
)  # fmt: skip
def test_ollama_names_near_a_provider_name_stay_ollama_models(name: str) -> None:
    assert parse_model_name(name) == ModelName("ollama", name)


@pytest.mark.parametrize("name", ["", "   ", "openai:"])
def test_empty_model_names_are_configuration_errors(name: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_model_name(name)


def test_direct_construction_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="connect_timeout"):
        Settings(connect_timeout=0)


def test_whitespace_around_keys_is_stripped() -> None:
    assert Settings(openai_api_key=" sk-key\n").api_key("openai") == "sk-key"


def test_malformed_prices_fail_when_settings_are_built() -> None:
    with pytest.raises(ConfigurationError, match="price for 'x'"):
        Settings(prices={"x": "cheap"})
