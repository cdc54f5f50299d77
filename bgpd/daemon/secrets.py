"""Reading a secret reference from a secrets directory: the file NAME/KEY under it, the layout
of a mounted Kubernetes Secret (whose keys are symlinks into a `..data` directory beside them).

Whoever can apply a BGPPeer chooses NAME and KEY, so a reference must never reach a file
outside the directory: both are checked against Kubernetes' name rules (again: the model
checked them when it read the resource), the path is resolved with every symlink followed
and must still lie inside the directory, and only a regular file is read. The value itself
is never part of an error message.
"""

from __future__ import annotations

import os
import stat

from calico.k8snames import secret_key_problem, secret_name_problem
from calico.model import SecretKeyRef

MAX_SECRET_BYTES = 4096
"""More than any password needs (a TCP MD5 key is at most 80 octets)."""


class SecretError(Exception):
    """The reference cannot be read; the message says why, never what the secret holds."""


def read_secret(secrets_dir: str, ref: SecretKeyRef) -> str:
    """The value of `ref`, a trailing newline removed. Raises SecretError."""
    where = f"{ref.name}/{ref.key}"
    for problem in (secret_name_problem(ref.name), secret_key_problem(ref.key)):
        if problem is not None:
            raise SecretError(f"secret {where!r}: {problem}")
    root = os.path.realpath(secrets_dir)
    path = os.path.realpath(os.path.join(root, ref.name, ref.key))
    if os.path.commonpath((root, path)) != root or path == root:
        raise SecretError(
            f"secret {where}: resolves to {path}, outside the secrets directory {root}"
        )
    try:
        # O_NOFOLLOW: `path` is resolved already, so a symlink now is one swapped in since.
        # O_NONBLOCK: a FIFO planted there must not hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretError(f"secret {where}: {exc.strerror}: {path}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SecretError(f"secret {where}: {path} is not a regular file")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretError(f"secret {where}: {exc.strerror}: {path}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretError(f"secret {where}: {path} is longer than {MAX_SECRET_BYTES} bytes")
    try:
        value = data.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        raise SecretError(f"secret {where}: {path} is not UTF-8 text") from None
    if not value:
        raise SecretError(f"secret {where}: {path} is empty")
    return value
