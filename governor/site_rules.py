"""A site's rules for the policies its users may ask for through a scheduler: a node-wide allow-list
and one per group (a Slurm partition, a Kubernetes namespace), read from the scheduler's site file
(/etc/govd/slurm.toml, /etc/govd/kubernetes.toml).

Both integrations decide the same way, so the rule and its wording live here once: a request that
is not a policy name, or not allowed where the job runs, falls back to the node's default policy
with a line that says why and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config_keys import Key, check_table
from .errors import ConfigError
from .policy import POLICY_NAME
from .tomlfile import TomlFileError, read_toml


@dataclass(frozen=True)
class AllowedPolicies:
    """Which policy names users may choose: `allowed` everywhere (None: any policy govd knows), and
    per group (`[partition.NAME] allowed = [...]`), which replaces the node-wide list there."""

    allowed: tuple[str, ...] | None = None
    per_group: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def allowed_in(self, group: str) -> tuple[str, ...] | None:
        return self.per_group.get(group, self.allowed)

    def allows(self, policy: str, group: str) -> bool:
        allowed = self.allowed_in(group)
        return allowed is None or policy in allowed

    def refusal(self, requested: str, group: str, where: str) -> str | None:
        """Why `requested` may not run in `group` (None: it may), in words for the user; `where` says
        where a group is ("on partition", "in namespace")."""
        if not POLICY_NAME.fullmatch(requested):
            return f"policy {requested[:80]!r} is not a policy name (letters, digits, '.', '_', '-'; at most 64)"
        if self.allows(requested, group):
            return None
        place = f" {where} {group}" if group in self.per_group else ""
        return (f"policy {requested!r} is not allowed{place}; allowed: "
                f"{', '.join(self.allowed_in(group) or ()) or 'none'}")


def load_site_file(path: Path, keys: dict[str, Key], group_word: str,
                   string_lists: dict[str, tuple[str, ...]] | None = None) -> tuple[dict, AllowedPolicies]:
    """(the file's other keys checked against `keys`, and its non-empty lists of strings named in
    `string_lists`, each with its default; its allow-lists). An absent file means the defaults and
    any policy."""
    string_lists = string_lists or {}
    if not path.exists():
        return {**{k: key.default for k, key in keys.items()}, **string_lists}, AllowedPolicies()
    try:
        data = read_toml(path)
    except TomlFileError as exc:
        raise ConfigError(str(path), "", str(exc)) from None
    lists = {}
    for name, default in string_lists.items():
        raw = data.pop(name, list(default))
        if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v.strip() for v in raw):
            raise ConfigError(str(path), name, f"must be a non-empty list of strings such as {list(default)!r}, "
                                               f"got {raw!r}")
        lists[name] = tuple(raw)
    groups = data.pop(group_word, {})
    allowed = data.pop("allowed", None)
    top = check_table(data, keys, str(path), "")
    if not isinstance(groups, dict):
        raise ConfigError(str(path), group_word, f"must be tables: [{group_word}.NAME] allowed = [...]")
    per = {}
    for name, table in groups.items():
        if not isinstance(table, dict) or set(table) - {"allowed"} or "allowed" not in table:
            raise ConfigError(str(path), f"{group_word}.{name}", "allowed: only `allowed = [\"NAME\", ...]`")
        per[name] = policy_names(table["allowed"], str(path), f"{group_word}.{name}.allowed")
    values = {**{k: top.get(k, key.default) for k, key in keys.items()}, **lists}
    return values, AllowedPolicies(
        allowed=policy_names(allowed, str(path), "allowed") if allowed is not None else None, per_group=per)


def policy_names(values, source: str, key: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise ConfigError(source, key, f"must be a list of policy names, got {values!r}")
    for v in values:
        if not isinstance(v, str) or not POLICY_NAME.fullmatch(v):
            raise ConfigError(source, key, f"{v!r} is not a policy name (letters, digits, '.', '_', '-')")
    return tuple(values)
