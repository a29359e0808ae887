"""The names the cockpit derives from the inventory, checked against what AWS and the file system accept:
environment names become file names (`<env>.jsonl`), namespaces and services become SSM parameter and
Secrets Manager names. Each `*_problem` function says why a name is refused ("" when it is accepted)."""

from __future__ import annotations

import re
from typing import Final

from inventory.toml import show as _show

# Names that AWS and the file system accept (refused on load, naming the rule).
ENV_NAME_MAX: Final = 64  # an environment names files: <state dir>/<env>.jsonl
SSM_NAME_MAX: Final = 1011  # an SSM parameter name, /<namespace>/<service>/<VAR>
SSM_LEVELS_MAX: Final = 15  # levels of an SSM parameter name
SSM_VARIABLE_ROOM: Final = 64  # characters an SSM name keeps free for the variable at its end
SECRET_NAME_MAX: Final = 512  # a Secrets Manager secret name
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_NAMESPACE_CHARS = re.compile(r"[A-Za-z0-9_./-]+\Z")  # what SSM and Secrets Manager names both accept
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]+\Z")
_SECRET_ARN = re.compile(r"arn:aws[A-Za-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+\Z")
_SECRET_ARN_MAX: Final = 2048
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def env_name_problem(name: str) -> str:
    """Why `name` cannot name an environment ("" when it can): it names files, <env>.jsonl."""
    if _ENV_NAME.match(name) and ".." not in name and len(name) <= ENV_NAME_MAX:
        return ""
    return (
        f"bad environment name {_show(name)}; use letters, digits, '_', '-' and '.', starting with a letter "
        f'or digit, without "..", at most {ENV_NAME_MAX} characters (the cockpit names files after it: '
        "<env>.jsonl)"
    )


def namespace_problem(namespace: str) -> str:
    """Why SSM or Secrets Manager would refuse names under `namespace` ("" when they accept them)."""
    if not _NAMESPACE_CHARS.match(namespace):
        return (
            f"the namespace may hold only letters, digits, '_', '.', '-' and '/' (what SSM parameter names "
            f"and Secrets Manager names both accept), got {_show(namespace)}"
        )
    if "//" in namespace:
        return f'the namespace has an empty level ("//"), which SSM parameter names refuse; got {_show(namespace)}'
    if namespace.lower().startswith(("aws", "ssm")):
        return (
            'SSM refuses parameter names that begin with "aws" or "ssm" (in any case), and every SSM name '
            f"here begins with /<namespace>/; got {_show(namespace)}"
        )
    levels = namespace.count("/") + 3  # /<namespace>/<service>/<VAR>
    if levels > SSM_LEVELS_MAX:
        return (
            f"SSM parameter names have at most {SSM_LEVELS_MAX} levels, and /<namespace>/<service>/<VAR> "
            f"would have {levels}; use a namespace of at most {SSM_LEVELS_MAX - 2} levels"
        )
    return ""


def secret_name_problem(name: str, *, what: str = "a Secrets Manager secret name") -> str:
    """Why Secrets Manager would refuse `name` ("" when it accepts it): letters, digits and /_+=.@-,
    at most 512 characters (an ARN of a secret is accepted as well)."""
    if _SECRET_ARN.match(name) and len(name) <= _SECRET_ARN_MAX:
        return ""
    if not _SECRET_NAME.match(name):
        return f"{what} may hold only letters, digits and /_+=.@- (Secrets Manager's rule), got {_show(name)}"
    if len(name) > SECRET_NAME_MAX:
        return f"{what} is {len(name)} characters long; Secrets Manager allows at most {SECRET_NAME_MAX}"
    return ""


def service_name_problem(name: str) -> str:
    """Why `name` cannot name a service ("" when it can): it becomes part of SSM and Secrets Manager
    names, /<namespace>/<service>/<VAR>."""
    if _SERVICE_NAME.match(name):
        return ""
    return (
        f"bad service name {_show(name)}; use letters, digits, '_', '-' or '.' "
        "(it becomes part of SSM and Secrets Manager names)"
    )
