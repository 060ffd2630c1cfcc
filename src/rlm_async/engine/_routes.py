"""``ModelRoutes``: which model answers what in a completion, resolved once.

The root model, the sub-model, a root model per depth, and the models code may name with
``llm_query(..., model=...)``: one object, resolved (names to providers) when the ``RLM``
is built, so an unknown name or a missing key fails there, not in the middle of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.providers import ProviderRegistry, ResolvedModel
from rlm_async.providers._base import Provider

__all__ = ["ModelChoice", "ModelRoutes"]

#: A model as given to ``RLM``: a name (``"openai:gpt-5"``, ``"gpt-5"``) or a Provider.
ModelChoice = str | Provider


@dataclass(frozen=True)
class ModelRoutes:
    """The resolved models of an ``RLM``.

    Attributes:
        root: The root model (depth 0).
        sub: The model of plain sub-calls, and of sub-RLMs past ``depth_models``.
        depth_models: A root model per depth (index 0 = root), when given.
        allowed: Every name code may pass as ``model=``, to its resolved model.
    """

    root: ResolvedModel
    sub: ResolvedModel
    depth_models: tuple[ResolvedModel, ...]
    allowed: dict[str, ResolvedModel]

    @classmethod
    def resolve(
        cls,
        registry: ProviderRegistry,
        model: object,
        sub_model: object,
        depth_models: object,
        allowed_models: object,
    ) -> ModelRoutes:
        """Check and resolve the models given to ``RLM``.

        Raises:
            ConfigurationError: a value that is not a model, an unknown name, a missing key.
        """
        depth_list = _names("depth_models", depth_models, models=True)
        allowed_list = _names("allowed_models", allowed_models, models=False)
        root = registry.resolve(check_model("model", model))
        sub = root if sub_model is None else registry.resolve(check_model("sub_model", sub_model))
        depth = tuple(registry.resolve(check_model("depth_models[]", m)) for m in depth_list)
        allowed: dict[str, ResolvedModel] = {}
        for resolved in (sub, root, *depth):
            allowed.setdefault(resolved.label, resolved)
        for name in allowed_list:
            resolved = registry.resolve(check_model("allowed_models[]", name))
            allowed.setdefault(resolved.label, resolved)
            allowed.setdefault(name, resolved)
        for spec, resolved in ((model, root), (sub_model, sub)):
            if isinstance(spec, str):
                allowed.setdefault(spec, resolved)
        return cls(root=root, sub=sub, depth_models=depth, allowed=allowed)

    def for_depth(self, depth: int) -> ResolvedModel:
        """The root model of a run at ``depth``."""
        if depth < len(self.depth_models):
            return self.depth_models[depth]
        return self.root if depth == 0 else self.sub

    def sub_for_depth(self, depth: int) -> ResolvedModel:
        """The model of plain sub-calls made by a run at ``depth``."""
        return self.for_depth(depth + 1) if depth + 1 < len(self.depth_models) else self.sub

    def allowed_model(self, name: str) -> ResolvedModel:
        """The model code asked for by name.

        Raises:
            ConfigurationError: the name is not allowed (the message lists what is).
        """
        found = self.allowed.get(name)
        if found is None:
            names = ", ".join(sorted({m.label for m in self.allowed.values()}))
            raise ConfigurationError(
                f"model {name!r} is not allowed here; allowed: {names}. "
                "(The application can allow more with RLM(allowed_models=[...]).)"
            )
        return found

    @property
    def allowed_names(self) -> list[str]:
        """Model labels the REPL may ask for with ``model=``, the default sub-model first."""
        names = [self.sub.label]
        names += [m.label for m in self.allowed.values() if m.label not in names]
        return names if len(names) > 1 else []

    def all_models(self) -> list[ResolvedModel]:
        """Every distinct resolved model, by label."""
        found = {m.label: m for m in (self.root, self.sub, *self.depth_models)}
        for model in self.allowed.values():
            found.setdefault(model.label, model)
        return list(found.values())


def needs_settings(*specs: object) -> bool:
    """Whether any model given is a name (resolving one needs keys and endpoints)."""
    for spec in specs:
        if isinstance(spec, str):
            return True
        if isinstance(spec, Sequence) and not isinstance(spec, str):
            if any(isinstance(item, str) for item in spec):
                return True
        elif isinstance(spec, set | frozenset) and any(isinstance(s, str) for s in spec):
            return True
    return False


def _names(name: str, value: object, *, models: bool) -> Sequence[Any]:
    """A list of model names (or, for ``depth_models``, Provider instances too)."""
    kind = "model names or Provider instances" if models else "model names"
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
        raise ConfigurationError(
            f"{name} must be a list of {kind}, e.g. {name}=['gpt-5-mini'], got {value!r}"
        )
    return list(value)


def check_model(name: str, value: object) -> ModelChoice:
    """``value`` as a model, or a ``ConfigurationError`` that says what one looks like."""
    if isinstance(value, str):
        if not value.strip():
            raise ConfigurationError(
                f"{name} must not be empty; e.g. 'gpt-5' or 'anthropic:claude-sonnet-4-5'"
            )
        return value
    if isinstance(value, Provider):
        return value
    raise ConfigurationError(
        f"{name} must be a model name (e.g. 'gpt-5', 'openai:gpt-4o', 'ollama:llama3.1') or a "
        f"Provider instance, got {type(value).__name__}"
    )
