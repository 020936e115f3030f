"""Complexity budgets: a small safe grammar for big-O classes.

A budget is text such as ``"b*n**2*d"``, ``"log(n)"`` or ``"O(n*log(n) + m)"``. It is parsed by the tokenizer and
recursive-descent parser below, never by ``eval`` or ``sympify``: the grammar is

    budget   := "O" "(" sum ")" | sum
    sum      := product ("+" product)*
    product  := power (("*" | "/") power)*
    power    := atom ("**" power)?           (the exponent must be a non-negative rational constant)
    atom     := INTEGER | NAME | "log" "(" sum ")" | "(" sum ")"

Every value is kept as a big-O *class* (depthscope/complexity.py): a set of terms, each a product of
``size**p * log(size)**q`` (p and q rational), reduced to the terms no other term dominates. Class A is within
class B when every term of A is dominated by some term of B: in every size symbol, B's (power, log power) is at
least A's (power first, then log power). A size of the model missing from the budget counts as power 0 there,
so a model that grows with a size the budget treats as constant is over budget; budget sizes the model does not
have are fine.

Everything here is plain Python (no sympy, no torch) so a warm `depthscope check` stays fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from depthscope.complexity import ONE, ZERO, Class, Term
from depthscope.errors import BudgetError

MAX_TEXT = 500  # characters in one budget
MAX_NESTING = 40  # parentheses and log() nesting
MAX_DIGITS = 30  # digits in one integer literal
MAX_EXPONENT = 64  # |numerator| and denominator of an exponent
MAX_TERMS = 64  # terms in a class, after reduction
MAX_CONSTANT_BITS = 4096  # size of an exact constant computed while parsing


# ---------------------------------------------------------------------------------------------
# Tokenizer

_TOKEN = re.compile(r"\s*(?:(?P<int>[0-9]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*/()^,.]))", re.ASCII)
_SPACE = re.compile(r"\s*", re.ASCII)


@dataclass(frozen=True)
class Token:
    kind: str  # "int", "name", "op", "end"
    text: str
    pos: int  # 0-based column


def tokenize(text: str) -> list[Token]:
    """Split budget text into tokens; anything outside the grammar's alphabet is an error at its column."""
    tokens = []
    pos = 0
    while True:
        m = _SPACE.match(text, pos)
        pos = m.end()
        if pos >= len(text):
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}", syntax=True)
        kind = m.lastgroup
        start = m.start(kind)
        tokens.append(Token(kind, m.group(kind), start))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


_GRAMMAR = "a budget is built from size names, integers, + * / **, log() and parentheses, e.g. b*n**2 or n*log(n)"


def _error(text: str, pos: int, msg: str, syntax: bool = False) -> BudgetError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    where = f"column {pos + 1}" if pos < len(text) else "at the end"
    return BudgetError(f"budget {shown!r}, {where}: {msg}" + (f" ({_GRAMMAR})" if syntax else ""))


# ---------------------------------------------------------------------------------------------
# Values while parsing: a class, plus the exact value when the subexpression is a constant


@dataclass(frozen=True)
class _Value:
    cls: Class
    const: Fraction | float | None = None  # None: depends on a size

    @staticmethod
    def constant(c: Fraction | float) -> "_Value":
        return _Value(ONE if c != 0 else ZERO, c)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    # token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def fail(self, msg: str, tok: Token | None = None, syntax: bool = False) -> BudgetError:
        return _error(self.text, (tok or self.tok).pos, msg, syntax)

    def expect(self, op: str) -> Token:
        tok = self.tok
        if tok.kind != "op" or tok.text != op:
            if tok.kind == "op" and tok.text in ",^-.":
                raise self.fail(self._unexpected(tok), syntax=True)
            found = "the end of the budget" if tok.kind == "end" else repr(tok.text)
            raise self.fail(f"expected {op!r}, found {found}", syntax=True)
        self.i += 1
        return tok

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    # grammar
    def budget(self) -> _Value:
        if self.tok.kind == "name" and self.tok.text == "O" and self.peek().text == "(":
            self.i += 1
            self.expect("(")
            value = self.sum()
            self.expect(")")
        else:
            value = self.sum()
        if self.tok.kind != "end":
            raise self.fail(self._unexpected(self.tok), syntax=True)
        return value

    def sum(self) -> _Value:
        value = self.product()
        while self.at_op("+"):
            self.i += 1
            value = _add(value, self.product(), self)
        return value

    def product(self) -> _Value:
        value = self.power()
        while self.at_op("*", "/"):
            op = self.tok
            self.i += 1
            rhs = self.power()
            value = _mul(value, rhs, self) if op.text == "*" else _div(value, rhs, self, op)
        return value

    def power(self) -> _Value:
        base = self.atom()
        if self.at_op("**"):
            op = self.tok
            self.i += 1
            self.enter(op)
            exponent = self.power()
            self.nesting -= 1
            return _pow(base, exponent, self, op)
        return base

    def enter(self, tok: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.fail(f"nested more than {MAX_NESTING} levels deep", tok)

    def atom(self) -> _Value:
        tok = self.tok
        if tok.kind == "int":
            if len(tok.text) > MAX_DIGITS:
                raise self.fail(f"integer longer than {MAX_DIGITS} digits")
            self.i += 1
            return _Value.constant(Fraction(int(tok.text)))
        if tok.kind == "name":
            self.i += 1
            if self.at_op("("):
                if tok.text != "log":
                    hint = " (the O(...) wrapper may only enclose the whole budget)" if tok.text == "O" else \
                        "; only log() is allowed (log base does not change the class)"
                    raise self.fail(f"unknown function {tok.text}(){hint}", tok)
                self.enter(tok)
                self.i += 1
                arg = self.sum()
                self.expect(")")
                self.nesting -= 1
                return _log(arg, self, tok)
            if tok.text == "log":
                raise self.fail("log must be called: write log(n)", tok)
            return _Value(Class((Term(((tok.text, Fraction(1), Fraction(0)),)),)))
        if self.at_op("("):
            self.enter(tok)
            self.i += 1
            value = self.sum()
            self.expect(")")
            self.nesting -= 1
            return value
        raise self.fail(self._unexpected(tok), syntax=True)

    def _unexpected(self, tok: Token) -> str:
        if tok.kind == "end":
            return "the budget ends where a size, an integer, log( or ( was expected"
        if tok.text == "^":
            return "'^' is not a power here: write n**2"
        if tok.text == "-":
            return "subtraction and negative numbers are not allowed in a budget"
        if tok.text == ".":
            return "only integers are allowed, not decimals"
        if tok.text == ",":
            return "unexpected ','; log() takes one argument"
        return f"unexpected {tok.text!r}"


def _check_terms(cls: Class, p: _Parser, tok: Token | None) -> Class:
    if len(cls.terms) > MAX_TERMS:
        raise p.fail(f"the budget expands to more than {MAX_TERMS} terms", tok)
    return cls


def _check_constant(c, p: _Parser, tok: Token | None):
    if isinstance(c, Fraction) and c.numerator.bit_length() + c.denominator.bit_length() > MAX_CONSTANT_BITS:
        raise p.fail("constant too large", tok)
    if isinstance(c, float) and not math.isfinite(c):
        raise p.fail("constant too large", tok)
    return c


def _add(a: _Value, b: _Value, p: _Parser) -> _Value:
    const = None
    if a.const is not None and b.const is not None:
        const = _check_constant(a.const + b.const, p, None)
    return _Value(_check_terms(Class.of(a.cls.terms + b.cls.terms), p, None), const)


def _mul(a: _Value, b: _Value, p: _Parser) -> _Value:
    if len(a.cls.terms) * len(b.cls.terms) > MAX_TERMS * 16:
        raise p.fail(f"the budget expands to more than {MAX_TERMS} terms")
    const = None
    if a.const is not None and b.const is not None:
        const = _check_constant(a.const * b.const, p, None)
    cls = Class.of(x.times(y) for x in a.cls.terms for y in b.cls.terms)
    return _Value(_check_terms(cls, p, None), const)


def _div(a: _Value, b: _Value, p: _Parser, op: Token) -> _Value:
    if not b.cls.terms:
        raise p.fail("division by zero", op)
    if len(b.cls.terms) > 1:
        raise p.fail("division by a sum is not a big-O class this grammar can state; divide by a product", op)
    const = None
    if a.const is not None and b.const is not None:
        const = _check_constant(a.const / b.const, p, op)
    inverse = b.cls.terms[0].scaled(Fraction(-1))
    return _Value(Class.of(x.times(inverse) for x in a.cls.terms), const)


def _pow(base: _Value, exponent: _Value, p: _Parser, op: Token) -> _Value:
    e = exponent.const
    if e is None:
        raise p.fail("an exponent must be a constant, not a size", op)
    if not isinstance(e, Fraction):
        raise p.fail("an exponent must be a rational number", op)
    if abs(e.numerator) > MAX_EXPONENT or e.denominator > MAX_EXPONENT:
        raise p.fail(f"exponent {e} is out of range (numerator and denominator up to {MAX_EXPONENT})", op)
    if e == 0:
        return _Value.constant(Fraction(1))
    if base.const is not None:
        c = base.const
        if c == 0:
            return _Value.constant(Fraction(0))
        if e.denominator == 1 and isinstance(c, Fraction):
            bits = (c.numerator.bit_length() + c.denominator.bit_length()) * abs(e.numerator)
            if bits > MAX_CONSTANT_BITS:
                raise p.fail("constant too large", op)
            return _Value.constant(c ** e.numerator)
        try:
            value = float(c) ** float(e)
        except OverflowError:
            raise p.fail("constant too large", op) from None
        return _Value.constant(_check_constant(value, p, op))
    if e.denominator == 1:
        # an integer power multiplies out, so (n + m)**2 keeps its cross term n*m
        result, square, k = _Value.constant(Fraction(1)), base, e.numerator
        while k:
            if k & 1:
                result = _mul(result, square, p)
            k >>= 1
            if k:
                square = _mul(square, square, p)
        return result
    # (a + b)**e is within a constant factor of a**e + b**e for e > 0
    return _Value(Class.of(t.scaled(e) for t in base.cls.terms))


def _log(arg: _Value, p: _Parser, tok: Token) -> _Value:
    if arg.const is not None:
        c = arg.const
        if c < 1:
            raise p.fail("log() of a constant below 1", tok)
        if c == 1:
            return _Value.constant(Fraction(0))
        return _Value.constant(math.log(c) if isinstance(c, float) else _log_fraction(c))
    terms = []
    for t in arg.cls.terms:
        if t.opaque:  # pragma: no cover - parsed text has no opaque factors
            raise p.fail("log() of an unsupported factor", tok)
        growing = [n for n, e, _ in t.factors if e > 0]
        if any(e < 0 for _, e, _ in t.factors):
            raise p.fail("log() of a quotient of sizes, which can fall below 1, is not a class", tok)
        if not growing and t.factors:
            raise p.fail("log(log(...)) is not supported; bound it by log(...)", tok)
        # log(n**a * m**b * log(n)**c) is within a constant factor of log(n) + log(m)
        terms += [Term(((n, Fraction(0), Fraction(1)),)) for n in growing] or [Term()]
    return _Value(Class.of(terms))


def _log_fraction(c: Fraction) -> float:
    return math.log(c.numerator) - math.log(c.denominator)


# ---------------------------------------------------------------------------------------------


def parse_budget(text) -> Class:
    """Parse budget text into its big-O class; raise BudgetError (exit 2) with the column for anything else."""
    if not isinstance(text, str):
        raise BudgetError(f"a budget must be a string such as \"n*log(n)\", got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise BudgetError(f"budget is longer than {MAX_TEXT} characters")
    if not text.strip():
        raise BudgetError("budget is empty; write a big-O class such as \"n\" or \"log(n)\" (\"1\" for constant)")
    parser = _Parser(text)
    try:
        value = parser.budget()
    except RecursionError:
        raise BudgetError(f"budget {text[:40]!r}: nested too deeply") from None
    if not value.cls.terms:
        raise BudgetError(f"budget {text!r} is zero, which admits nothing; write 1 for a constant budget")
    return value.cls


__all__ = ["BudgetError", "Token", "parse_budget", "tokenize"]
