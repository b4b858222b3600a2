"""Similarity between submissions: copied work within a class, and from an archive of
earlier submissions or public solutions, without flagging honest convergent answers.

Only the answer regions count (the text between ``# >>> Question N`` and ``# <<<
Question N``, or a whole answer cell in layouts without markers). The student template
is the base: its statements are dropped from answers and its k-grams never count.

Code is compared as MOSS compares it, after normalisation: each region is parsed, its
comments, docstrings, ``pass``, unreachable and dead statements dropped, independent
statements put in a canonical order (a topological order of their read/write
dependencies, ties broken by content), then serialised to tokens with the names the
student chose and every literal replaced by placeholders. k-grams of tokens are hashed
and winnowed (Schleimer, Wilkerson and Aiken, 2003), so a copy with inserted lines still
shares most of its fingerprints.

A shared fingerprint is weighed by its rarity in the class (one every student holds is
worth nothing). Short answers, which the task constrains, count together; Question 7,
open-ended, counts on its own, scaled by how many of its numbers the two share (see
_Scorer). Pairs come from an inverted index of fingerprints: each fingerprint adds to the
pairs of the submissions holding it, and one held by more than ``common_cap(N)`` (a tenth
of the class) is common and skipped, so the work grows with the number of fingerprints
times the square of their holders, bounded by that cap, not with N squared. Other
evidence adds to a pair's score: the same normalised Question 7 answer, identical
checkpoints (bytes or tensors), the same rare Question 7 model (from a batch's results),
identical rare outputs or error messages in answer cells.
"""

from __future__ import annotations

import ast
import hashlib
import io
import itertools
import keyword
import math
import os
import re
import statistics
import textwrap
import time
import tokenize
import zipfile
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .assignment import default_assignment
from .checkpoint import inspect_checkpoint, pick_checkpoint
from .preprocess import module_cells, prepare
from .results import SubmissionResult
from .submission import InvalidSubmission, Submission, discover, load_submission, submission_name

K = 10  # tokens per k-gram: shorter common runs are noise
WINDOW = 5  # winnowing window: any shared run of K + WINDOW - 1 tokens is found
THRESHOLD = 0.4  # default score from which a pair is flagged (a copied Question 7 alone scores about 0.5)
ASSIGNMENT = default_assignment()
QUESTIONS = ASSIGNMENT.questions
# The open-ended challenge question (Question 7), whose answers differ the most.
CHALLENGE = ASSIGNMENT.challenge
SPOKEN_CHALLENGE = ASSIGNMENT.spoken(CHALLENGE) if CHALLENGE else "challenge"
CHALLENGES = (CHALLENGE,) if CHALLENGE else ()  # what copied checkpoints point at
# Each question's weight in a pair's score (the homework's similarity_weights): the
# open-ended Question 7 as much as all the short answers together (which the task
# constrains, so honest answers converge).
QUESTION_WEIGHT = {q: ASSIGNMENT.weight(q) for q in QUESTIONS}
# Question 7's code counts in full only with the same numbers (sizes, rates, epochs): with
# other numbers the same code shape is what students who follow one tutorial write.
NUMBERS_SHARE = 0.25
MIN_Q7_FINGERPRINTS = 20
MIN_SHARED_FINGERPRINTS = 3  # pairs sharing fewer rare fingerprints (and nothing else) are not scored  # a Question 7 answer shorter than this is weighed as if this long
CHECKPOINT_SCORE = 1.0  # identical trained weights are copied work whatever the code
Q7_MODEL_BONUS = 0.25  # the same rare Question 7 model (checkpoint shapes, grader's description)
# The same Question 7 answer, numbers included, once names, comments, layout, order and
# dead code are normalised away: copied, even where every fragment of it is common.
SAME_ANSWER_BONUS = 0.5
MIN_SAME_ANSWER_TOKENS = 40  # a shorter answer can be the same by chance
OUTPUT_BONUS = 0.1  # per identical rare output line in an answer cell (at most 3)
MIN_OUTPUT_CHARS = 16  # shorter output lines ("torch.Size([64, 10])") prove nothing
MAX_REGION_CHARS = 200_000  # an answer region larger than this is cut (hostile input)

_REGION = re.compile(
    r"^[ \t]*#\s*>>>\s*Question\s+([1-7])\b[^\n]*\n(.*?)^[ \t]*#\s*<<<\s*Question\s+\1\b[^\n]*", re.M | re.S
)


# -- profiles: what one submission brings -------------------------------------------------------


@dataclass
class Region:
    question: str  # "Q1"; a cell answering several questions is attributed to the first
    questions: list[str]
    label: str  # where the student finds it: "cell 12" or "lines 40-55"
    source: str  # dedented answer text


@dataclass
class Profile:
    name: str
    regions: list[Region] = field(default_factory=list)
    # fingerprint -> (region index, lines of that region it covers), first occurrence
    fingerprints: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    checkpoint_bytes: str | None = None  # sha256 of the file
    checkpoint_tensors: str | None = None  # digest of its tensors' bytes, whatever the file around them
    q7_model: tuple | None = None  # what the Question 7 model is, for "same unusual model"
    q7_numbers: Counter = field(default_factory=Counter)  # its literal numbers: sizes, rates, epochs
    q7_answer: str | None = None  # digest of the normalised Question 7 answer and its numbers
    q7_prints: frozenset = frozenset()  # Question 7's fingerprints, common ones included
    outputs: dict[str, str] = field(default_factory=dict)  # normalised output line -> question


def answer_regions(submission: Submission) -> tuple[list[Region], list[str]]:
    """The answer regions of a submission (marked regions where the template's markers
    are, else every cell attributed to a question, whole), and the rest of its code."""
    found, rest = [], []
    for cell in submission.cells:
        if not cell.questions:
            rest.append(cell.source)
            continue
        source = cell.source[:MAX_REGION_CHARS]
        marked = list(_REGION.finditer(source))
        rest.append(_REGION.sub("", source))
        for m in marked:
            first = cell.line_offset + source[: m.start(2)].count("\n") + 1
            label = f"{cell.label}, from line {first}" if cell.line_offset else cell.label
            q = f"Q{m[1]}"
            found.append(Region(q, [q], label, textwrap.dedent(m[2])))
        if not marked:
            found.append(Region(cell.questions[0], list(cell.questions), cell.label, textwrap.dedent(source)))
    return found, rest


# -- normalisation ------------------------------------------------------------------------------

_EVERYTHING = "*"  # a statement that conflicts with every other (control flow)


def _paths(node: ast.AST, ctx: type) -> set[str]:
    """Whole dotted names (``self.conv1.weight``, not also ``self``) read or written
    under ``node``."""
    found = set()

    def visit(n: ast.AST) -> None:
        if isinstance(n, (ast.Name, ast.Attribute)):
            parts: list[str] = []
            cur: ast.expr = n
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                if isinstance(n.ctx, ctx):
                    found.add(".".join([cur.id, *reversed(parts)]))
                return
            n = cur  # a chain on a call's result, super().__init__: look inside the call
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return found


def _effects(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """(reads, writes) of a statement, conservatively: a bare call may change its
    receiver and its arguments, and control flow conflicts with everything."""
    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        reads, writes = _paths(stmt, ast.Load), _paths(stmt, ast.Store)
        if isinstance(stmt, ast.AugAssign):
            reads |= writes
        for target in getattr(stmt, "targets", [getattr(stmt, "target", None)]):
            if isinstance(target, ast.Subscript):  # w[0] = ... changes w
                writes |= _paths(target.value, ast.Load)
        return reads, writes
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        reads = _paths(stmt, ast.Load)
        func = stmt.value.func
        receiver = _paths(func.value, ast.Load) if isinstance(func, ast.Attribute) else set()
        return reads, reads | receiver | {"<io>"}
    if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
        heads = [*stmt.decorator_list, *getattr(stmt, "bases", [])]
        if isinstance(stmt, ast.FunctionDef):
            heads += [*stmt.args.defaults, *stmt.args.kw_defaults]
        reads = set().union(*(_paths(h, ast.Load) for h in heads if h is not None))
        return reads, {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return set(), {(a.asname or a.name).split(".")[0] for a in stmt.names}
    return {_EVERYTHING}, {_EVERYTHING}


def _overlap(a: set[str], b: set[str]) -> bool:
    if _EVERYTHING in a or _EVERYTHING in b:
        return bool(a and b)
    return any(x == y or x.startswith(y + ".") or y.startswith(x + ".") for x in a for y in b)


def _dead(stmt: ast.stmt, used: set[str]) -> bool:
    """Statements that change nothing: docstrings and bare constants, pass, ``if False:``
    blocks, and assignments to names nothing in the submission ever reads."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True
    if isinstance(stmt, (ast.If, ast.While)) and isinstance(stmt.test, ast.Constant) and not stmt.test.value:
        return not stmt.orelse
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return all(isinstance(t, ast.Name) and t.id not in used for t in targets)
    return False


def _drop_overwritten(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """Drop ``name = <constant>`` when a later statement of the block assigns the name
    before anything reads it: the template's ``model = None`` before an answer."""
    kept = []
    for i, stmt in enumerate(stmts):
        overwritten = False
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Constant)
        ):
            name = stmt.targets[0].id
            for later in stmts[i + 1 :]:
                reads, writes = _effects(later)
                if name in reads or _EVERYTHING in reads:
                    break
                if name in writes:
                    overwritten = True  # unread
                    break
        if not overwritten:
            kept.append(stmt)
    return kept


class _Normaliser(ast.NodeTransformer):
    """Drops dead statements and puts independent statements in a canonical order."""

    def __init__(self, used: set[str], key, template: frozenset[str] = frozenset()):
        self.used, self.key, self.template = used, key, template

    def _block(self, body: list[ast.stmt]) -> list[ast.stmt]:
        kept = []
        for stmt in body:
            if _dead(stmt, self.used) or (not hasattr(stmt, "body") and ast.dump(stmt) in self.template):
                continue  # dead, or a line of the template (learning_rate = 3e-3 in an answer cell)
            kept.append(self.visit(stmt))
            if isinstance(stmt, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
                break  # what follows is unreachable
        return self._canonical_order(_drop_overwritten(kept))

    def _canonical_order(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        """A topological order of the dependency graph (statement j after i when they
        touch the same name and one writes it), smallest content key first: any
        reordering of independent statements gives the same result."""
        if len(stmts) < 2:
            return stmts
        effects = [_effects(s) for s in stmts]
        keys = [self.key(s) for s in stmts]
        before: list[set[int]] = [set() for _ in stmts]
        for j, (rj, wj) in enumerate(effects):
            for i in range(j):
                ri, wi = effects[i]
                if _overlap(wi, rj | wj) or _overlap(ri, wj):
                    before[j].add(i)
        order: list[int] = []
        placed: set[int] = set()
        while len(order) < len(stmts):
            ready = [j for j in range(len(stmts)) if j not in placed and before[j] <= placed]
            j = min(ready, key=lambda j: (keys[j], j))
            order.append(j)
            placed.add(j)
        return [stmts[j] for j in order]

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, name, self._block(value))
            elif isinstance(value, list):
                setattr(node, name, [self.visit(v) if isinstance(v, ast.AST) else v for v in value])
            elif isinstance(value, ast.AST):
                setattr(node, name, self.visit(value))
        return node


class Tokens:
    """A region's normalised token stream, each token with the line it comes from."""

    def __init__(self, bound: set[str], stored_attrs: set[str]):
        self.bound, self.stored_attrs = bound, stored_attrs
        self.items: list[tuple[str, int]] = []
        self.numbers: list[str] = []  # the literal numbers, for "the same hyperparameters"

    def emit(self, token: str, line: int) -> None:
        self.items.append((token, line))

    def node(self, node: ast.AST, line: int = 0) -> None:
        line = getattr(node, "lineno", line)
        if isinstance(node, ast.expr_context):
            return
        if isinstance(node, ast.Name):
            self.emit("V" if node.id in self.bound else node.id, line)
        elif isinstance(node, ast.Attribute):
            self.node(node.value, line)
            self.emit(".V" if node.attr in self.stored_attrs else "." + node.attr, line)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.numbers.append(repr(value))
            self.emit(
                "S"
                if isinstance(value, (str, bytes))
                else "N"
                if isinstance(value, (int, float, complex))
                else repr(value),
                line,
            )
            if isinstance(value, bool) or value is None:
                return
        elif isinstance(node, ast.keyword):
            self.emit(f"{node.arg}=", line)
            self.node(node.value, line)
        elif isinstance(node, ast.arg):
            self.emit("V", line)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            self.emit(type(node).__name__, line)
            for child in ast.iter_child_nodes(node):
                self.node(child, line)
            self.emit("end", line)
        else:
            self.emit(type(node).__name__, line)
            for child in ast.iter_child_nodes(node):
                self.node(child, line)


def _stable(token: str) -> int:
    return zlib.crc32(token.encode())  # the same in every process, unlike hash(str)


def _variables(sources: list[str]) -> set[str]:
    """Variables and parameters the code around the answers binds (``conv_w1`` unpacked
    before the Question 1 region, say): in an answer they are the student's names as
    much as those it binds itself. Functions it defines (the provided helpers) keep
    their names."""
    found: set[str] = set()
    for source in sources:
        tree = _parse(textwrap.dedent(source))
        if tree is not None:
            found.update(
                n.id if isinstance(n, ast.Name) else n.arg
                for n in ast.walk(tree)
                if (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)) or isinstance(n, ast.arg)
            )
    return found


def _bound_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names the student chose (assigned, defined, parameters, loop targets) and the
    attributes they store (``self.conv1``); library names stay as they are."""
    bound, attrs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            attrs.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound, attrs


def _fallback_tokens(source: str) -> list[tuple[str, int]]:
    """Tokens of a region that does not parse: names, literals and operators from
    Python's tokenizer, as far as it gets."""
    out = []
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in skip:
                continue
            text = {tokenize.NAME: "V", tokenize.NUMBER: "N", tokenize.STRING: "S"}.get(tok.type, tok.string)
            if tok.type == tokenize.NAME and (keyword.iskeyword(tok.string) or tok.string[:1].isupper()):
                text = tok.string
            out.append((text, tok.start[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def normalised_tokens(
    source: str,
    used: set[str],
    numbers: list[str] | None = None,
    tree: ast.Module | None = None,
    variables: frozenset[str] | set[str] = frozenset(),
    template: frozenset[str] = frozenset(),
) -> list[tuple[str, int]]:
    """The token stream of one answer region after normalisation (see the module's
    docstring); ``numbers`` collects the literal numbers of the code that counts;
    ``variables`` are names bound around the region (see _variables)."""
    tree = tree or _parse(source)
    if tree is None:
        return _fallback_tokens(source)
    bound, attrs = _bound_names(tree)
    bound |= variables

    def key(stmt: ast.stmt) -> str:
        tokens = Tokens(bound, attrs)
        tokens.node(stmt)
        return " ".join(t for t, _ in tokens.items)

    try:
        tree = _Normaliser(used, key, template).visit(tree)
        tokens = Tokens(bound, attrs)
        for stmt in tree.body:
            tokens.node(stmt)
    except RecursionError:
        return _fallback_tokens(source)
    if numbers is not None:
        numbers.extend(tokens.numbers)
    return tokens.items


def kgram_hashes(tokens: list[tuple[str, int]], k: int = K) -> list[tuple[int, tuple[int, ...]]]:
    """(hash, lines covered) of every k-gram of the token stream."""
    ids = [_stable(t) for t, _ in tokens]
    return [
        (hash(tuple(ids[i : i + k])), tuple(sorted({ln for _, ln in tokens[i : i + k]})))
        for i in range(len(ids) - k + 1)
    ]


def winnow(grams: list[tuple[int, tuple[int, ...]]], window: int = WINDOW) -> list[tuple[int, tuple[int, ...]]]:
    """The minimum hash of every window of ``window`` k-grams (the rightmost on ties),
    each kept once: the fingerprints of a document."""
    if len(grams) <= window:
        return list(grams)
    picked, last = [], -1
    for start in range(len(grams) - window + 1):
        best = min(range(start, start + window), key=lambda i: (grams[i][0], -i))
        if best != last:
            picked.append(grams[best])
            last = best
    return picked


_WORD = re.compile(r"[A-Za-z_]\w*")


# -- the base: what every student received ---------------------------------------------------


@dataclass(frozen=True)
class Base:
    """What every student received: the student template's k-grams and statements."""

    hashes: frozenset[int]
    statements: frozenset[str]  # ast.dump of each simple statement

    def __contains__(self, h: int) -> bool:
        return h in self.hashes


def base_hashes(template: str | None = None) -> Base:
    """Every k-gram of the student template (the provided helpers, the question cells'
    given lines and placeholders): matches there never count. Its statements are
    dropped from answers before normalising."""
    if template is None:
        template = _student_template()
    cells = prepare(module_cells(template))
    statements = frozenset(
        ast.dump(n)
        for c in cells
        if (tree := _parse(textwrap.dedent(c.source)))
        for n in ast.walk(tree)
        if isinstance(n, ast.stmt) and not hasattr(n, "body")
    )
    used = set(_WORD.findall(template))
    variables = _variables([c.source for c in cells])
    found: set[int] = set()
    for cell in cells:
        found.update(
            h for h, _ in kgram_hashes(normalised_tokens(textwrap.dedent(cell.source), used, None, None, variables))
        )
        for m in _REGION.finditer(cell.source):
            found.update(
                h for h, _ in kgram_hashes(normalised_tokens(textwrap.dedent(m[2]), used, None, None, variables))
            )
    return Base(frozenset(found), statements)


def _student_template() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        from .assign import render_script

        return render_script(filled=False, root=root)
    except Exception:  # the answer key is not installed: the generated copy is the same text
        path = root / "student_template" / "cifar10_pytorch.py"
        return path.read_text() if path.exists() else ""


# -- other evidence ----------------------------------------------------------------------------

_TENSOR_ENTRY = re.compile(r"/data/\d+$")


def _checkpoint_digests(files: dict[str, bytes]) -> tuple[str | None, str | None, tuple | None]:
    """(sha256 of the file, digest of its tensors' bytes, sizes of its tensors), read
    without unpickling: a torch.save zip keeps each storage as its own entry."""
    picked = pick_checkpoint(files)
    if picked is None:
        return None, None, None
    name, raw = picked
    whole = hashlib.sha256(raw).hexdigest()
    blobs: list[bytes] = []
    try:
        if name.endswith(".safetensors"):
            info = inspect_checkpoint(name, raw)
            blobs = [t.contiguous().view(-1).numpy().tobytes() for t in (info.state or {}).values()]
        elif zipfile.is_zipfile(io.BytesIO(raw)):
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                blobs = [
                    archive.read(i)
                    for i in archive.infolist()
                    if _TENSOR_ENTRY.search(i.filename) and i.file_size < 1 << 30
                ]
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, TypeError):
        blobs = []
    if not blobs:
        return whole, None, None
    digests = sorted(hashlib.sha256(b).hexdigest() for b in blobs)
    return whole, hashlib.sha256("".join(digests).encode()).hexdigest(), tuple(sorted(len(b) for b in blobs))


def _output_lines(submission: Submission, result: SubmissionResult | None) -> dict[str, str]:
    """Output lines and error messages of answer cells, whitespace collapsed."""
    found: dict[str, str] = {}
    for cell in submission.cells:
        if cell.questions and cell.outputs_text:
            for line in cell.outputs_text[:MAX_REGION_CHARS].splitlines():
                found.setdefault(" ".join(line.split()), cell.questions[0])
    if result is not None:
        for run in result.cells:
            if run.questions and run.error:
                message = f"{run.error.get('type', '')}: {run.error.get('message', '')}"
                found.setdefault(" ".join(message.split())[:300], run.questions[0])
    return {line: q for line, q in found.items() if len(line) >= MIN_OUTPUT_CHARS}


def profile(submission: Submission, base: Base, result: SubmissionResult | None = None) -> Profile:
    """Everything the comparison needs from one submission."""
    regions, rest = answer_regions(submission)
    p = Profile(name=submission.name, regions=regions)
    trees = [_parse(r.source) for r in regions]
    # A name that nothing reads (in the answers or the code around them) is dead.
    used = set(_WORD.findall("\n".join(rest)))
    variables = _variables(rest)
    for region, tree in zip(regions, trees):
        if tree is None:
            used.update(_WORD.findall(region.source))
        else:
            used.update(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store))
    literals: list[str] = []
    q7_tokens: list[str] = []
    for index, (region, tree) in enumerate(zip(regions, trees)):
        numbers: list[str] = []
        tokens = normalised_tokens(region.source, used, numbers, tree, variables, base.statements)
        own = [(h, lines) for h, lines in winnow(kgram_hashes(tokens)) if h not in base]
        for h, lines in own:
            p.fingerprints.setdefault(h, (index, lines))
        if region.question == CHALLENGE and own:  # the template's own Question 7 cells are left out
            literals += numbers
            q7_tokens += [t for t, _ in tokens]
    p.checkpoint_bytes, p.checkpoint_tensors, sizes = _checkpoint_digests(submission.files)
    challenge = result.challenge if result is not None else {}
    described = tuple(
        (key, repr(challenge[key])) for key in ("model_type", "parameters", "epochs_requested") if key in challenge
    )
    p.q7_numbers = Counter(literals)  # the sizes, rates and epochs of Question 7
    p.q7_prints = frozenset(h for h, (i, _) in p.fingerprints.items() if regions[i].question == CHALLENGE)
    if sizes or described:
        p.q7_model = (sizes, described)
    if len(q7_tokens) >= MIN_SAME_ANSWER_TOKENS:
        text = " ".join(q7_tokens) + "|" + " ".join(sorted(literals))
        p.q7_answer = hashlib.sha256(text.encode()).hexdigest()
    p.outputs = _output_lines(submission, result)
    return p


# -- comparison --------------------------------------------------------------------------------


@dataclass
class Match:
    a: str
    b: str  # another submission, or an archive entry
    score: float
    questions: list[str]
    evidence: list[str]
    archive: bool = False
    hashes: list[int] = field(default_factory=list, repr=False)  # the shared fingerprints that count

    def line(self) -> str:
        qs = ",".join(self.questions) or "-"
        what = f"matches archive entry {self.b}" if self.archive else self.b
        extra = f"  ({'; '.join(self.evidence)})" if self.evidence else ""
        return f"{self.a}\t{what}\t{self.score:.2f}\t{qs}{extra}"

    def summary(self) -> dict:
        return {
            "with": self.b,
            "archive": self.archive,
            "score": round(self.score, 3),
            "questions": self.questions,
            "evidence": self.evidence,
        }


def common_cap(n: int) -> int:
    """Past this many holders a fingerprint is common: worth nothing, and not indexed."""
    return max(4, n // 10)


def rarity(df: int, n: int) -> float:
    """Weight of a fingerprint held by ``df`` of ``n`` submissions: 1 when at most two
    hold it, falling to 0 as more do (0 past ``common_cap(n)``)."""
    if df <= 2 or n <= 2:
        return 1.0
    if df > common_cap(n):
        return 0.0
    return min(1.0, math.log(n / df) / math.log(n / 2)) ** 2


@dataclass
class Analysis:
    matches: list[Match]  # every pair that shares anything rare, best first
    archive_matches: list[Match]
    threshold: float
    profiles: dict[str, Profile] = field(default_factory=dict, repr=False)
    archive: dict[str, Profile] = field(default_factory=dict, repr=False)
    seconds: float = 0.0

    @property
    def submissions(self) -> int:
        return len(self.profiles)

    def flagged(self) -> list[Match]:
        return [m for m in self.matches if m.score >= self.threshold]

    def flagged_archive(self) -> list[Match]:
        return [m for m in self.archive_matches if m.score >= self.threshold]

    def top_by_student(self) -> dict[str, dict]:
        """Each student's strongest match (in the class or the archive), for the
        instructor's gradebook and results.json."""
        top: dict[str, tuple[Match, str]] = {}
        for m in [*self.matches, *self.archive_matches]:
            if m.score < 0.01:
                continue
            sides = [(m.a, m.b)] if m.archive else [(m.a, m.b), (m.b, m.a)]
            for name, other in sides:
                if name not in top or m.score > top[name][0].score:
                    top[name] = (m, other)
        return {name: m.summary() | {"with": other} for name, (m, other) in top.items()}

    def views(self, m: Match) -> dict[str, tuple[list, list]]:
        """For each question of a match, both sides' answer regions as (label, [(line
        text, matched?)]): the side-by-side view of the class page."""
        a = self.profiles[m.a]
        b = (self.archive if m.archive else self.profiles)[m.b]
        hits_a: dict[int, set[int]] = defaultdict(set)
        hits_b: dict[int, set[int]] = defaultdict(set)
        for h in m.hashes:
            ra, la = a.fingerprints[h]
            rb, lb = b.fingerprints[h]
            hits_a[ra].update(la)
            hits_b[rb].update(lb)
        return {q: (_view(a, hits_a, q), _view(b, hits_b, q)) for q in m.questions}

    def to_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "submissions": self.submissions,
            "seconds": round(self.seconds, 3),
            "flagged": [{"a": m.a} | m.summary() for m in self.flagged()],
            "archive": [{"a": m.a} | m.summary() for m in self.flagged_archive()],
        }


def _overlap_share(a: Counter, b: Counter) -> float:
    """Jaccard similarity of two multisets (1 when both are empty)."""
    both = sum(min(n, b[k]) for k, n in a.items() if k in b)
    union = a.total() + b.total() - both
    return both / union if union else 1.0


class _Pair:
    __slots__ = ("by_question", "hashes")

    def __init__(self):
        self.by_question, self.hashes = defaultdict(float), []

    def add(self, h: int, question: str, weight: float) -> None:
        self.by_question[question] += weight
        if weight > 0:
            self.hashes.append(h)


def _view(p: Profile, hit_lines: dict[int, set[int]], question: str) -> list:
    out = []
    for index, region in enumerate(p.regions):
        if region.question != question or index not in hit_lines:
            continue
        lines = region.source.splitlines()
        out.append((region.label, [(text, n + 1 in hit_lines[index]) for n, text in enumerate(lines)]))
    return out


class _Scorer:
    """Scores of pairs in one class.

    For each question, the rarity-weighted share of the smaller answer that the other
    holds (its containment), with a floor under the smaller answer's weight (half the
    class median for that question), so two short answers made of common fragments
    cannot look like a copied whole. For Question 7 the containment is scaled by how
    many of its numbers (sizes, rates, epochs) the two share. Squared (which keeps
    partial, convergent overlap low and whole copies high), the containments give the
    score: the larger of Question 7's alone and the mean over the questions both
    answered, weighted by QUESTION_WEIGHT. A copied Question 7 is flagged on its own;
    copied short answers only together.
    """

    def __init__(self, profiles: list[Profile], postings: dict[int, list[int]]):
        self.n = len(profiles)
        self.df = {h: len(ids) for h, ids in postings.items()}
        self.masses = {id(p): self._masses(p) for p in profiles}
        self.floors = {
            q: 0.5 * statistics.median(m[q] for m in self.masses.values() if m.get(q))
            for q in QUESTIONS
            if any(m.get(q) for m in self.masses.values())
        }
        self.models = Counter(p.q7_model for p in profiles if p.q7_model)
        self.answers = Counter(p.q7_answer for p in profiles if p.q7_answer)
        self.outputs = Counter(line for p in profiles for line in p.outputs)

    def weight(self, h: int) -> float:
        return rarity(self.df[h], self.n) if h in self.df else 1.0

    def _masses(self, p: Profile) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for h, (i, _) in p.fingerprints.items():
            out[p.regions[i].question] += self.weight(h)
        return out

    def mass(self, p: Profile) -> dict[str, float]:
        if id(p) not in self.masses:
            self.masses[id(p)] = self._masses(p)
        return self.masses[id(p)]

    def code_score(self, a: Profile, b: Profile, pair: _Pair) -> tuple[float, list[str]]:
        ma, mb = self.mass(a), self.mass(b)
        answered = [q for q in QUESTIONS if q in ma and q in mb]
        total = sum(QUESTION_WEIGHT[q] for q in answered)
        if not total:
            return 0.0, []
        mean, q7, questions = 0.0, 0.0, []
        for q in answered:
            floor = max(self.floors.get(q, 0.0), 1e-9)
            containment = min(1.0, pair.by_question.get(q, 0.0) / max(min(ma[q], mb[q]), floor))
            if q == CHALLENGE and containment > 0:
                # Common fragments count too here, half (an answer built of common parts
                # can be copied), but the same code shape with other sizes and rates is
                # what students who follow one tutorial write.
                shared = len(a.q7_prints & b.q7_prints)
                whole = shared / max(min(len(a.q7_prints), len(b.q7_prints)), MIN_Q7_FINGERPRINTS)
                numbers = _overlap_share(a.q7_numbers, b.q7_numbers)
                containment = (containment + whole) / 2 * (NUMBERS_SHARE + (1 - NUMBERS_SHARE) * numbers)
                q7 = containment**2
            mean += QUESTION_WEIGHT[q] * containment**2
            if containment >= 0.5:
                questions.append(q)
        return max(q7, mean / total), questions

    def match(self, a: Profile, b: Profile, pair: _Pair, *, archive: bool) -> Match:
        score, found = self.code_score(a, b, pair)
        questions, evidence = set(found), []
        if a.checkpoint_bytes and a.checkpoint_bytes == b.checkpoint_bytes:
            evidence.append("byte-identical checkpoints")
        elif a.checkpoint_tensors and a.checkpoint_tensors == b.checkpoint_tensors:
            evidence.append("numerically identical checkpoints")
        if evidence:
            score = max(score, CHECKPOINT_SCORE)
            questions.update(CHALLENGES)
        if a.q7_answer and a.q7_answer == b.q7_answer and self.answers[a.q7_answer] + archive <= 2:
            score += SAME_ANSWER_BONUS
            evidence.append(f"the same {SPOKEN_CHALLENGE} answer and hyperparameters once normalised")
            questions.update(CHALLENGES)
        if a.q7_model and a.q7_model == b.q7_model and self.models[a.q7_model] + archive <= 2:
            score += Q7_MODEL_BONUS
            evidence.append(f"the same unusual {SPOKEN_CHALLENGE} model")
            questions.update(CHALLENGES)
        rare = [line for line in a.outputs if line in b.outputs and self.outputs[line] + archive <= 2][:3]
        if rare:
            score += OUTPUT_BONUS * len(rare)
            where = sorted({a.outputs[line] for line in rare})
            questions.update(where)
            evidence.append(f"identical output in {', '.join(where)}: {rare[0][:80]!r}")
        return Match(a.name, b.name, min(score, 1.0), sorted(questions), evidence, archive, pair.hashes)


def compare(profiles: list[Profile], archive: list[Profile] | None = None, *, threshold: float = THRESHOLD) -> Analysis:
    """Score every pair of submissions that shares anything rare, and every
    submission against each archive entry."""
    started = time.monotonic()
    postings: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(profiles):
        for h in p.fingerprints:
            postings[h].append(i)
    scorer = _Scorer(profiles, postings)
    cap = common_cap(len(profiles))

    shared: dict[tuple[int, int], list] = defaultdict(list)
    for h, ids in postings.items():
        if len(ids) < 2 or len(ids) > cap:
            continue
        w = scorer.weight(h)
        questions = [profiles[i].regions[profiles[i].fingerprints[h][0]].question for i in ids]
        for x, y in itertools.combinations(range(len(ids)), 2):
            q = questions[x] if QUESTION_WEIGHT[questions[x]] >= QUESTION_WEIGHT[questions[y]] else questions[y]
            shared[(ids[x], ids[y])].append((h, q, w))
    # Identical checkpoints or Question 7 models make a pair even without rare shared code.
    evidence: set[tuple[int, int]] = set()
    for attr in ("checkpoint_bytes", "checkpoint_tensors", "q7_model", "q7_answer"):
        groups: dict = defaultdict(list)
        for i, p in enumerate(profiles):
            if getattr(p, attr):
                groups[getattr(p, attr)].append(i)
        for ids in groups.values():
            if 2 <= len(ids) <= cap:
                evidence.update(itertools.combinations(ids, 2))
    matches = []
    for i, j in shared.keys() | evidence:
        common = shared.get((i, j), [])
        if len(common) < MIN_SHARED_FINGERPRINTS and (i, j) not in evidence:
            continue  # a fragment or two in common: no copy to score
        pair = _Pair()
        for h, q, w in common:
            pair.add(h, q, w)
        matches.append(scorer.match(profiles[i], profiles[j], pair, archive=False))

    archive_matches = []
    index: dict[int, list[int]] = defaultdict(list)
    for j, entry in enumerate(archive or []):
        for h in entry.fingerprints:
            index[h].append(j)
    for p in profiles:
        found: dict[int, _Pair] = defaultdict(_Pair)
        for h, (region, _) in p.fingerprints.items():
            if h in index and scorer.df.get(h, 0) <= cap:
                for j in index[h]:
                    found[j].add(h, p.regions[region].question, scorer.weight(h))
        for j, entry in enumerate(archive or []):
            if p.checkpoint_tensors and entry.checkpoint_tensors == p.checkpoint_tensors:
                found.setdefault(j, _Pair())  # an identical checkpoint is a match without shared code
        archive_matches += [scorer.match(p, (archive or [])[j], pair, archive=True) for j, pair in found.items()]

    matches.sort(key=lambda m: (-m.score, m.a, m.b))
    archive_matches.sort(key=lambda m: (-m.score, m.a, m.b))
    return Analysis(
        matches,
        archive_matches,
        threshold,
        profiles={p.name: p for p in profiles},
        archive={p.name: p for p in archive or []},
        seconds=time.monotonic() - started,
    )


# -- from folders --------------------------------------------------------------------------------


def _profile_one(path: Path, base: Base, result: SubmissionResult | None, name: str | None):
    try:
        submission = load_submission(path, to_run=False)
    except (InvalidSubmission, OSError) as exc:
        return f"{Path(path).name}: left out of the similarity analysis: {exc}"
    if name:
        submission.name = name
    return profile(submission, base, result)


def load_profiles(
    paths: list[Path],
    base: Base,
    results: dict[str, SubmissionResult] | None = None,
    *,
    names: list[str] | None = None,
    jobs: int = 1,
) -> tuple[list[Profile], list[str]]:
    """Profiles of the readable submissions, and a note for each that is not. A
    submission is named ``names[i]`` if given, else after its file; ``results`` (by
    that name) add evidence; ``jobs`` processes read them."""
    results = results or {}
    names = names or [submission_name(Path(path)) for path in paths]
    args = [(Path(path), base, results.get(name), name) for path, name in zip(paths, names)]
    if jobs > 1 and len(paths) > 50:
        import concurrent.futures as futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            done = list(pool.map(_profile_one, *zip(*args), chunksize=max(1, len(args) // (4 * jobs))))
    else:
        done = [_profile_one(*a) for a in args]
    profiles = [d for d in done if isinstance(d, Profile)]
    notes = [d for d in done if isinstance(d, str)]
    seen: Counter = Counter()
    for p in profiles:  # two submissions may share a name (alice.ipynb and alice/)
        seen[p.name] += 1
        if seen[p.name] > 1:
            p.name = f"{p.name}-{seen[p.name]}"
    return profiles, notes


def saved_results(folder: Path) -> dict[str, SubmissionResult]:
    """The results a batch wrote under ``folder`` (each sub-folder's results.json), by
    submission name and by report folder."""
    import json

    found = {}
    for path in sorted(Path(folder).glob("*/results.json")):
        try:
            result = SubmissionResult.from_dict(json.loads(path.read_text())["extra_data"]["submission"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a results file of this grader: the analysis goes on without it
        found[path.parent.name] = found[result.name] = result
    return found


def analyse(
    *,
    submissions: Path | list[Path],
    against: Path | None = None,
    threshold: float = THRESHOLD,
    results: dict[str, SubmissionResult] | None = None,
    names: list[str] | None = None,
    template: str | None = None,
    jobs: int | None = None,
) -> tuple[Analysis, list[str]]:
    """The similarity analysis of a folder (or list) of submissions, optionally against
    an archive folder. ``names`` (one per path) name the submissions (default: after
    their files); ``results`` (from a batch, by those names) add Question 7 model
    descriptions and error messages as evidence."""
    started = time.monotonic()
    paths = discover(Path(submissions)) if isinstance(submissions, (str, Path)) else list(submissions)
    jobs = jobs or os.cpu_count() or 1
    base = base_hashes(template)
    profiles, notes = load_profiles(paths, base, results, names=names, jobs=jobs)
    archive = None
    if against is not None:
        archive, archive_notes = load_profiles(discover(Path(against)), base, jobs=jobs)
        notes += archive_notes
    analysis = compare(profiles, archive, threshold=threshold)
    analysis.seconds = time.monotonic() - started
    return analysis, notes
