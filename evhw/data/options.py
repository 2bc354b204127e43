"""Query options of source names (``NAME?key=value&...``) and their value parsers."""
from __future__ import annotations

from urllib.parse import parse_qsl

from ..errors import ConfigError


def parse_options(spec, query, known):
    """``query`` parsed against ``known`` (option -> parser); a one-line error names the bad option."""
    try:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ConfigError(f"bad options {query!r} in {spec!r}; use e.g. {spec.split('?')[0]}?start=10&step=2") from None
    bad = sorted(set(opts) - set(known))
    if bad:
        raise ConfigError(f"unknown option(s) {', '.join(bad)} in {spec!r}; known: {', '.join(sorted(known))}")
    out = {}
    for k, v in opts.items():
        try:
            out[k] = known[k](v)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value {v!r} for option {k!r} in {spec!r}") from None
    return out


def crop_arg(v):
    if v in ("center", "full"):
        return v
    parts = tuple(int(p) for p in v.split(","))
    if len(parts) != 4 or min(parts[2:]) < 1 or min(parts[:2]) < 0:
        raise ValueError(v)
    return parts


def pos_int(v):
    i = int(v)
    if i < 1:
        raise ValueError(v)
    return i


def nonneg_int(v):
    i = int(v)
    if i < 0:
        raise ValueError(v)
    return i


def hold_range(v):
    a, _, b = v.partition("-")
    lo, hi = int(a), int(b or a)
    if lo < 1 or hi < lo:
        raise ConfigError(f"hold is MIN-MAX frames with 1 <= MIN <= MAX, not {v!r}")
    return lo, hi
