"""Passwords in URLs (store, MLflow): hidden from anything printed, logged or raised. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

MIN_BARE_SECRET = 4  # a shorter password is not searched for on its own: replacing it would garble messages


def _split(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port, like the rest of a bad URL
        return parts
    except ValueError:
        return None


def hide_password(url: str) -> str:
    """`url` fit to print: its password replaced by ***."""
    parts = _split(url)
    if parts is None or parts.password is None:
        return url if parts is not None else _hide_by_hand(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _hide_by_hand(url: str) -> str:
    # A URL urlsplit refuses (e.g. a bad port) may still hold a password between `user:` and the last `@`.
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def without_credentials(url: str) -> str:
    """`url` with no user or password: for links shown to others (a link with *** in it would not work anyway)."""
    parts = _split(url)
    if parts is None or "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _secrets(urls: tuple[str | None, ...]) -> list[tuple[str, str]]:
    """(text to find, its replacement) for each URL with a password: the URL, then the password alone."""
    pairs: list[tuple[str, str]] = []
    for url in filter(None, urls):
        hidden = hide_password(url)
        if hidden == url:
            continue
        pairs.append((url, hidden))
        parts = _split(url)
        userinfo = url.partition("://")[2].rpartition("@")[0]
        password = (parts.password if parts else None) or (userinfo.split(":", 1)[1] if ":" in userinfo else "")
        for form in {password, unquote(password)}:
            if len(form) >= MIN_BARE_SECRET:
                pairs.append((form, "***"))
    return pairs


def redact(text: str, *urls: str | None) -> str:
    """`text` with every URL of `urls` shown without its password, and the password alone replaced by ***."""
    for secret, replacement in _secrets(urls):
        text = text.replace(secret, replacement)
    return text


def scrub(error: BaseException, *urls: str | None) -> BaseException:
    """Remove the passwords of `urls` from `error` and its causes, in place; returns the error to raise.

    Dagster stores a failed step's message and its chain of causes in the event log.
    """
    pairs = _secrets(urls)

    def found(text: str) -> bool:
        return any(secret in text for secret, _ in pairs)

    seen: set[int] = set()
    previous, current = None, error
    while pairs and current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact(a, *urls) if isinstance(a, str) else a for a in current.args)
        if isinstance(getattr(current, "message", None), str):  # MlflowException formats from .message
            current.message = redact(current.message, *urls)
        if found(str(current)):  # a __str__ that does not come from args: replace it, or cut the chain above it
            if previous is None:
                return RuntimeError(redact(str(current), *urls))
            previous.__cause__, previous.__context__, previous.__suppress_context__ = None, None, True
            break
        previous, current = current, current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return error


@contextmanager
def secrets_hidden(*urls: str | None) -> Iterator[None]:
    """Errors raised inside carry no password of `urls` (MLflow names its tracking URI in some errors)."""
    try:
        yield
    except BaseException as error:
        clean = scrub(error, *urls)
        if clean is error:
            raise
        raise clean from None
