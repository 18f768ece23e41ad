"""`summary.md` and `summary.html`: a bundle explained to people, written before the manifest.

Both are written by `EvidenceBundle.finalize()` before `manifest.json`, so the manifest
covers them. The HTML page is self-contained (inline CSS, no scripts, no external assets) and
every value in it is HTML-escaped. `cihub evidence show` prints the same facts with rich.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.evidence import _fs
from harness.evidence.audit import read_commands
from harness.evidence.manifest import (
    MANIFEST,
    RESERVED,
    FileEntry,
    Manifest,
    ManifestInvalid,
    Predicate,
    read_marker,
)

SUMMARY_MD = "summary.md"
SUMMARY_HTML = "summary.html"
COMMANDS_LOG = "audit/commands.log"
MAX_COMMANDS = 200
"""At most this many (the last) commands are listed in a summary."""


@dataclass(frozen=True)
class SummaryData:
    """What a summary shows."""

    name: str
    predicate: Predicate
    files: tuple[FileEntry, ...]
    commands: tuple[dict[str, Any], ...]
    total_commands: int
    digest: str | None = None
    """The manifest digest (unknown while the summaries themselves are being written)."""
    complete: bool = False
    signer: str | None = None
    """Who signs the manifest (identity and issuer, or a key), when known."""
    trust_root: str | None = None
    """The trust root the signature is made under (verify pins its own)."""
    culprits: tuple[str, ...] = ()
    """A dual build's culprit variations, each shown with a fix hint."""


FIX_HINTS: dict[str, str] = {
    "umask": "set `umask 022` before the build, or give archived files fixed modes "
    "(`tar --mode=go-w`)",
    "time": "honour SOURCE_DATE_EPOCH and don't embed the build time (`tar "
    "--mtime=@$SOURCE_DATE_EPOCH --clamp-mtime`, `gzip -n`, no `date` in outputs)",
    "timezone": "build with `TZ=UTC`, and format times in UTC",
    "domain_host": "don't embed the host or domain name (`uname -n`, `hostname`) in outputs",
    "locales": "set `LC_ALL=C.UTF-8` for the build; sort with `LC_ALL=C`",
    "fileordering": "sort directory listings (`sorted(os.listdir())`, `find | sort`, "
    "`tar --sort=name`)",
    "disorderfs": "sort directory listings (`sorted(os.listdir())`, `find | sort`, "
    "`tar --sort=name`)",
    "build_path": "don't embed the build folder (`-ffile-prefix-map=$PWD=.`, relative paths)",
    "user_group": "archive with fixed owners (`tar --owner=0 --group=0 --numeric-owner`)",
    "home": "don't embed $HOME; give the build a fixed HOME",
    "num_cpus": "don't let outputs depend on the CPU count (`nproc`): fix job counts, sort "
    "results",
    "environment": "don't embed environment variables in outputs",
    "aslr": "don't embed addresses or hash seeds (`PYTHONHASHSEED=0`)",
}
"""What to change when a variation is a culprit (reprotest's variation names)."""


def fix_hint(culprit: str) -> str:
    """How to remove one culprit variation from a build."""
    return FIX_HINTS.get(culprit, "make the build independent of this variation")


def headline(data: SummaryData) -> tuple[str, str]:
    """(PASS/FAIL/INCOMPLETE, why): the one line a reviewer reads first.

    A drill's outcome says whether its finding was expected; without one, every verdict must
    have passed. This is the drill's own claim: `cihub evidence verify` is what checks it.
    """
    p = data.predicate
    if not data.complete:
        return "INCOMPLETE", "the bundle was not finalized (the drill stopped or crashed)"
    outcome = p.outcome
    if outcome is not None:
        if outcome.met:
            rest = outcome.expected.removeprefix(outcome.observed).strip()
            return "PASS", f"{outcome.observed}, as expected" + (f" {rest}" if rest else "")
        return "FAIL", f"{outcome.observed}, expected {outcome.expected or 'another finding'}"
    failed = sorted(k for k, v in p.verdicts.items() if v.verdict == "fail")
    if failed:
        return "FAIL", "failed: " + ", ".join(failed)
    return "PASS", f"{len(p.verdicts)} verdict(s), none failed"


LINKS: tuple[tuple[str, str], ...] = (
    ("determinism/report.html", "diffoscope report"),
    ("determinism/diff.txt", "diff"),
    ("determinism/result.json", "dual-build result"),
    ("determinism/culprits.json", "culprit search"),
    (COMMANDS_LOG, "commands log"),
)
"""Files a reviewer opens next, linked from the top of the page when present."""


def _links(data: SummaryData) -> list[tuple[str, str]]:
    present = {f.path for f in data.files}
    return [(path, label) for path, label in LINKS if path in present]


def _signer_line(data: SummaryData) -> str:
    signer = data.signer or "not signed"
    root = f"; trust root {data.trust_root}" if data.trust_root else ""
    return f"{signer}{root}; log index: `rekor/entry.json` (`cihub evidence show`)"


def _cmd_line(command: dict[str, Any]) -> str:
    argv = command.get("argv") or []
    return " ".join(str(a) for a in argv)


def _fmt_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(data: SummaryData) -> str:
    """The summary as GitHub-flavoured Markdown."""
    p = data.predicate
    word, why = headline(data)
    out = [
        f"# Evidence bundle `{_md(data.name)}`",
        "",
        f"**{word}**: {_md(why)}",
        "",
        f"- **Signed by:** {_md(_signer_line(data))}",
    ]
    links = _links(data)
    if links:
        out.append("- **Open:** " + ", ".join(f"[{label}]({path})" for path, label in links))
    if data.culprits:
        out += ["", "## How to fix the culprits", ""]
        out += [f"- **{_md(c)}**: {_md(fix_hint(c))}" for c in data.culprits]
        out.append("")
    out += [
        f"- **Run id:** `{_md(p.run_id)}`",
        f"- **Scenario:** {_md(p.scenario or '-')}",
        f"- **Started:** {_md(p.started_on)}; **finished:** {_md(p.finished_on or '-')}",
        f"- **Complete:** {'yes' if data.complete else 'NO (not finalized)'}",
    ]
    if data.digest:
        out.append(f"- **Manifest digest:** `{data.digest}`")
    if p.policy_digest:
        out.append(f"- **Policy digest:** `{_md(p.policy_digest)}`")
    out.append(f"- **Required paths:** {', '.join(f'`{_md(r)}`' for r in p.required_paths) or '-'}")
    out += ["", "## Verdicts", ""]
    if p.verdicts:
        out += ["| Check | Verdict | Detail |", "|---|---|---|"]
        out += [
            f"| {_md(k)} | {v.verdict} | {_md(v.detail)} |" for k, v in sorted(p.verdicts.items())
        ]
    else:
        out.append("No verdicts recorded.")
    out += ["", "## Steps", ""]
    if p.steps:
        out += ["| Step | Result | Seconds | Detail |", "|---|---|---:|---|"]
        out += [
            f"| {_md(s.name)} | {s.result} | {s.duration_s:.3f} | {_md(s.detail)} |"
            for s in p.steps
        ]
    else:
        out.append("No steps recorded.")
    if p.artifacts:
        out += ["", "## Artifacts", "", "| Name | Digest |", "|---|---|"]
        out += [f"| {_md(a.name)} | `{_md(a.digest)}` |" for a in p.artifacts]
    if p.tool_versions:
        out += ["", "## Tool versions", "", "| Tool | Version |", "|---|---|"]
        out += [f"| {_md(k)} | {_md(v)} |" for k, v in sorted(p.tool_versions.items())]
    out += ["", f"## Commands ({data.total_commands})", ""]
    if data.commands:
        if data.total_commands > len(data.commands):
            out.append(f"The last {len(data.commands)} are listed; see `{COMMANDS_LOG}`.\n")
        out += ["| Exit | Seconds | Command |", "|---:|---:|---|"]
        out += [
            f"| {_md(c.get('exit_code'))} | {float(c.get('duration_s') or 0):.3f} "
            f"| `{_md(_cmd_line(c))}` |"
            for c in data.commands
        ]
    else:
        out.append("No commands recorded.")
    out += ["", f"## Files ({len(data.files)})", "", "| Path | Size | sha256 |", "|---|---:|---|"]
    out += [f"| `{_md(f.name)}` | {f.size} | `{f.sha256}` |" for f in data.files]
    out += [
        "",
        f"`{SUMMARY_MD}` and `{SUMMARY_HTML}` are listed in `{MANIFEST}`, which is not listed "
        "here. Verify offline with `cihub evidence verify <bundle>`.",
        "",
    ]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0}
td,th{border:1px solid #ccd;padding:.25rem .5rem;text-align:left;vertical-align:top}
.verdict{font-size:1.3rem;padding:.5rem .8rem;border:2px solid currentColor;display:inline-block}
th{background:#eef}code{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
.pass,.success{color:#146c2e;font-weight:600}.fail,.failure,.error,.timeout{color:#b3261e;
font-weight:600}.skip,.cancellation{color:#7a5b00}.num{text-align:right}
""".strip()


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: object, css: str = "", code: bool = False) -> str:
    inner = f"<code>{_h(value)}</code>" if code else _h(value)
    cls = f' class="{_h(css)}"' if css else ""
    return f"<td{cls}>{inner}</td>"


def _code_spans(text: str) -> str:
    """Escape `text`, showing its `backticked` parts as code."""
    pieces = text.split("`")
    return "".join(
        f"<code>{_h(piece)}</code>" if index % 2 else _h(piece) for index, piece in enumerate(pieces)
    )


def _html_top(data: SummaryData) -> list[str]:
    word, why = headline(data)
    css = {"PASS": "pass", "FAIL": "fail"}.get(word, "skip")
    parts = [
        f'<p id="verdict" class="verdict {css}"><strong>{_h(word)}</strong>: {_h(why)}</p>',
        f'<p id="signer">Signed by: {_code_spans(_signer_line(data))}</p>',
    ]
    links = _links(data)
    if links:
        anchors = ", ".join(f'<a href="{_h(path)}">{_h(label)}</a>' for path, label in links)
        parts.append(f'<p id="links">Open: {anchors}</p>')
    if data.culprits:
        items = "".join(
            f"<li><strong>{_h(c)}</strong>: {_code_spans(fix_hint(c))}</li>" for c in data.culprits
        )
        parts.append(f'<h2>How to fix the culprits</h2><ul id="fixes">{items}</ul>')
    return parts


def render_html(data: SummaryData) -> str:
    """The summary as one self-contained HTML page (no scripts, no external resources)."""
    p = data.predicate
    facts = [
        ("Run id", p.run_id),
        ("Scenario", p.scenario or "-"),
        ("Started", p.started_on),
        ("Finished", p.finished_on or "-"),
        ("Complete", "yes" if data.complete else "NO (not finalized)"),
        ("Manifest digest", data.digest or "(see manifest.json)"),
        ("Policy digest", p.policy_digest or "-"),
        ("Required paths", ", ".join(p.required_paths) or "-"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Evidence bundle {_h(data.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evidence bundle <code>{_h(data.name)}</code></h1>",
        *_html_top(data),
        _table(["Fact", "Value"], [[_td(k), _td(v, code=True)] for k, v in facts]),
        "<h2>Verdicts</h2>",
        _table(
            ["Check", "Verdict", "Detail"],
            [[_td(k), _td(v.verdict, v.verdict), _td(v.detail)] for k, v in p.verdicts.items()],
        )
        if p.verdicts
        else "<p>No verdicts recorded.</p>",
        "<h2>Steps</h2>",
        _table(
            ["Step", "Result", "Seconds", "Detail"],
            [
                [
                    _td(s.name),
                    _td(s.result, s.result),
                    _td(f"{s.duration_s:.3f}", "num"),
                    _td(s.detail),
                ]
                for s in p.steps
            ],
        )
        if p.steps
        else "<p>No steps recorded.</p>",
    ]
    if p.artifacts:
        parts += [
            "<h2>Artifacts</h2>",
            _table(
                ["Name", "Digest"], [[_td(a.name), _td(a.digest, code=True)] for a in p.artifacts]
            ),
        ]
    if p.tool_versions:
        parts += [
            "<h2>Tool versions</h2>",
            _table(
                ["Tool", "Version"], [[_td(k), _td(v)] for k, v in sorted(p.tool_versions.items())]
            ),
        ]
    parts.append(f"<h2>Commands ({data.total_commands})</h2>")
    if data.commands:
        if data.total_commands > len(data.commands):
            parts.append(
                f"<p>The last {len(data.commands)} are listed; see <code>{COMMANDS_LOG}</code>.</p>"
            )
        parts.append(
            _table(
                ["Exit", "Seconds", "Command"],
                [
                    [
                        _td(c.get("exit_code"), "num"),
                        _td(f"{float(c.get('duration_s') or 0):.3f}", "num"),
                        _td(_cmd_line(c), code=True),
                    ]
                    for c in data.commands
                ],
            )
        )
    else:
        parts.append("<p>No commands recorded.</p>")
    parts += [
        f"<h2>Files ({len(data.files)})</h2>",
        _table(
            ["Path", "Size", "sha256"],
            [
                [_td(f.name, code=True), _td(_fmt_size(f.size), "num"), _td(f.sha256, code=True)]
                for f in data.files
            ],
        ),
        f"<p>This page and <code>{SUMMARY_MD}</code> are covered by <code>{MANIFEST}</code>. "
        "Verify the bundle offline with <code>cihub evidence verify &lt;bundle&gt;</code>.</p>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def collect_files(root: Path, *, skip: frozenset[str] = frozenset()) -> tuple[FileEntry, ...]:
    """Hash every regular file below `root` except the reserved names and `skip`, sorted."""
    buffer = bytearray(_fs.HASH_BUFFER)
    entries = []
    for rel, entry in _fs.walk_files(root):
        if rel in RESERVED or rel in skip or _fs.TMP_MARK in entry.name:
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        sha, size = _fs.hash_file(Path(entry.path), buffer)
        entries.append(FileEntry(rel, sha, size))
    return tuple(sorted(entries, key=lambda f: f.name))  # manifest order (escaped names)


def load_summary_data(root: Path) -> SummaryData:
    """What `cihub evidence show` prints: from `manifest.json`, else from the marker.

    Raises:
        ManifestInvalid: the manifest exists but can't be parsed.
    """
    commands, total = read_commands(root / COMMANDS_LOG, MAX_COMMANDS)
    marker = read_marker(root)
    manifest_path = root / MANIFEST
    if _fs.exists_no_follow(manifest_path):
        manifest = Manifest.from_path(manifest_path)  # refuses a link or special file
        return SummaryData(
            name=root.name,
            predicate=manifest.predicate,
            files=manifest.files,
            commands=tuple(commands),
            total_commands=total,
            digest=manifest.digest,
            complete=marker is None and manifest.predicate.complete,
        )
    if marker is None:
        raise ManifestInvalid(f"{root}: neither {MANIFEST} nor an INCOMPLETE marker")
    return SummaryData(
        name=root.name,
        predicate=marker[0],
        files=collect_files(root),
        commands=tuple(commands),
        total_commands=total,
        digest=None,
        complete=False,
    )


def read_culprits(root: Path) -> tuple[str, ...]:
    """The culprits a dual build named, from `determinism/result.json` (none if unreadable)."""
    path = root / "determinism" / "result.json"
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
            return ()
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return ()
    culprits = value.get("culprits") if isinstance(value, dict) else None
    if not isinstance(culprits, list):
        return ()
    return tuple(str(c) for c in culprits if isinstance(c, str))


def write_summaries(root: Path, data: SummaryData) -> None:
    """Write `summary.md` and `summary.html` into `root` atomically."""
    _fs.atomic_write_bytes(root / SUMMARY_MD, render_markdown(data).encode())
    _fs.atomic_write_bytes(root / SUMMARY_HTML, render_html(data).encode())
