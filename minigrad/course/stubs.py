"""Finding the exercises in the library's source and replacing their bodies with stubs.

An exercise is the function (or method) right below a ``# exercise: <name>`` comment line.
``find_sites`` locates each one with ``ast``; ``stub_source`` replaces the lines of its body
(docstring, comments and code) with a docstring and a ``raise NotImplementedError`` naming the
exercise, keeping the signature, the decorators and the marker itself.
"""

from __future__ import annotations

import ast
import io
import os
import re
import textwrap
import tokenize
from dataclasses import dataclass

MARKER = re.compile(r"^\s*# exercise: (\w+)\s*$")


@dataclass(frozen=True)
class Site:
    """Where one exercise lives: ``path`` relative to the package root, the function's
    ``qualname`` (``Class.method`` for a method) and the 1-based, inclusive line span of its
    body (what a stub replaces), with the body's indentation."""

    exercise: str
    path: str
    qualname: str
    body_start: int
    body_end: int
    indent: str

    @property
    def module(self) -> str:
        """The dotted module path below the package, e.g. ``kernels._norm_twin``."""
        return self.path[:-3].replace(os.sep, ".").replace("/", ".")


def _functions(tree: ast.AST) -> list[tuple[str, ast.FunctionDef]]:
    """Every module-level function and every method of a module-level class, qualified."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            found += [(f"{node.name}.{f.name}", f) for f in node.body
                      if isinstance(f, ast.FunctionDef)]
    return found


def _is_code(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _body_span(lines: list[str], fn: ast.FunctionDef) -> tuple[int, int, str]:
    """The lines a stub replaces: from just after the signature to the body's last line,
    with any comment lines before the first statement and after the last one (indented
    like the body) included, so that no comment of the solution survives."""
    first = fn.body[0]
    if first.lineno == fn.lineno:
        raise ValueError(f"line {fn.lineno}: an exercise's body must start on its own line")
    start = first.lineno
    while start - 1 > fn.lineno and not _is_code(lines[start - 2]):
        start -= 1  # blank or comment lines between the signature and the first statement
    indent = lines[first.lineno - 1][: first.col_offset]
    end = fn.end_lineno
    while end < len(lines) and (not lines[end].strip() or (
            lines[end].startswith(indent) and lines[end].strip().startswith("#"))):
        end += 1
    while end > fn.end_lineno and not lines[end - 1].strip():
        end -= 1  # keep the blank lines that separate it from what follows
    return start, end, indent


def find_sites(source: str, path: str) -> list[Site]:
    """The exercise sites of one module's source (``path`` relative to the package root).

    Raises ValueError when a marker is not directly above a function or method.
    """
    lines = source.splitlines()
    marked = {i + 2: m.group(1) for i, line in enumerate(lines) if (m := MARKER.match(line))}
    if not marked:
        return []
    sites = []
    for qualname, fn in _functions(ast.parse(source)):
        top = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        if top in marked:
            start, end, indent = _body_span(lines, fn)
            sites.append(Site(marked.pop(top), path, qualname, start, end, indent))
    if marked:
        line, name = next(iter(marked.items()))
        raise ValueError(f"{path}:{line - 1}: the marker of exercise {name!r} is not directly "
                         "above a module-level function or a method")
    return sites


def scan_package(root: str) -> list[Site]:
    """Every exercise site in the Python files of the package at ``root``, in file order."""
    sites = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "course", "bench"))
        for name in sorted(files):
            if name.endswith(".py"):
                full = os.path.join(directory, name)
                with open(full, encoding="utf-8") as f:
                    sites += find_sites(f.read(), os.path.relpath(full, root))
    return sites


def stub_lines(site: Site, description: str, handout: str) -> list[str]:
    """The body that replaces an exercise's: a docstring and the NotImplementedError, in lines
    that fit in 100 columns."""
    width = 100 - len(site.indent)
    doc = textwrap.wrap(f'"""Exercise {site.exercise}: {description}. See {handout}."""',
                        width)
    message = f"exercise {site.exercise} is not written yet (see {handout})"
    return [site.indent + line for line in doc] + [
        f"{site.indent}raise NotImplementedError(",
        f"{site.indent}    {message!r})",
    ]


def stub_source(source: str, sites: list[Site], bodies: dict[str, list[str]]) -> str:
    """``source`` with the body of each site replaced by ``bodies[site.qualname]``."""
    lines = source.splitlines()
    for site in sorted(sites, key=lambda s: s.body_start, reverse=True):
        lines[site.body_start - 1: site.body_end] = bodies[site.qualname]
    text = "\n".join(lines) + "\n"
    ast.parse(text)  # a stub that broke the module would be a bug here, not the student's
    return text


def body_text(source: str, site: Site) -> str:
    """The original body of a site, as it stands in ``source``."""
    return "\n".join(source.splitlines()[site.body_start - 1: site.body_end])


def code_tokens(text: str, skip_docstring: bool = False) -> str:
    """Python code as its tokens joined without comments, line breaks or indentation: the
    form in which a solution is searched for in the student copy (text that is not Python,
    such as Markdown, only loses its whitespace)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(text)).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.sub(r"\s+", "", text)
    dropped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
               tokenize.DEDENT, tokenize.ENDMARKER}
    kept = [t.string for t in tokens if t.type not in dropped]
    if skip_docstring and kept and tokens and _starts_with_docstring(tokens):
        kept = kept[1:]
    return "".join(kept)


def _starts_with_docstring(tokens: list) -> bool:
    first = next(t for t in tokens if t.type not in (tokenize.NL, tokenize.COMMENT,
                                                      tokenize.INDENT))
    return first.type == tokenize.STRING
