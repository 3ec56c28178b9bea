"""Arithmetic the model should not do in its head: small LLMs get sums wrong confidently.

The expression is parsed with `ast` (digit groups and "15% of 80" made Python first) and
only numbers, + - * / // % ** (or ^) and parentheses, unary minus, sqrt, abs, round and pi
are evaluated; everything else is refused by name. Numbers are exact fractions (0.1 + 0.2
is 0.3) until something irrational (sqrt 2, pi, a fractional power) makes the result a
float; powers whose result would not fit in `MAX_BITS` are refused before they are computed.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

Number = Fraction | float
MAX_LENGTH = 200
MAX_BITS = 4000
"""About 1,200 digits: past that no answer is worth saying aloud."""
PRECISION = 6
"""Significant digits said of a result that is not exact."""
EXACT_BELOW = 10 ** 18
"""Larger results are given in floating point: their digits would only cost prompt time."""
_DIGIT_GROUP = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|percent)\s*of\b", re.IGNORECASE)
_ALLOWED = "numbers, + - * / // % ** ( ), sqrt, abs, round and pi"


def calculate(expression: str) -> dict[str, Any]:
    """The calculate tool: the value as a number, and the way to say it."""
    value = evaluate(expression)
    try:
        number: int | float = (int(value) if isinstance(value, Fraction) and abs(value)
                               < EXACT_BELOW and value.denominator == 1 else float(value))
    except OverflowError:
        raise ValueError("the result is too large") from None
    return {"result": number, "spoken": spoken_number(value)}


def evaluate(expression: str) -> Number:
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(_as_python(expression), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression ({err.msg})") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError("the result is too large") from None
    if (isinstance(value, Fraction) and _bits(value) > MAX_BITS) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise ValueError("the result is too large")
    return value


def _as_python(expression: str) -> str:
    """What people write that Python reads otherwise: digit groups ("1,254": a tuple to
    Python) and percentages ("15% of 80": 15 modulo of…)."""
    expression = _DIGIT_GROUP.sub("", expression.strip())
    return _PERCENT_OF.sub(r"(\1)/100*", expression)


def spoken_number(value: Number) -> str:
    """"1,234", "minus 0.5", "about 0.333333", "about 1.5 times 10 to the power of 20"."""
    with localcontext() as context:
        context.prec = 40
        decimal = (Decimal(value.numerator) / Decimal(value.denominator)
                   if isinstance(value, Fraction) else Decimal(value))
    sign, decimal = ("minus " if decimal < 0 else ""), abs(decimal)
    if isinstance(value, Fraction) and decimal < EXACT_BELOW and (places := _places(value)) <= 6:
        return sign + f"{decimal:,.{places}f}"
    if decimal == 0:
        return "about 0"  # a float too small to say
    magnitude = decimal.adjusted()  # the power of ten of its first digit
    if -6 <= magnitude < 15:
        text = f"{decimal:,.{max(0, PRECISION - 1 - magnitude)}f}"
        return f"about {sign}{text.rstrip('0').rstrip('.') if '.' in text else text}"
    mantissa, exponent = f"{decimal:.{PRECISION - 1}e}".split("e")
    return (f"about {sign}{mantissa.rstrip('0').rstrip('.')} times 10 to the power of "
            f"{int(exponent)}")


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(repr(node.value))  # the decimal as written: 0.1 is 1/10
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _exact(_BINARY[type(node.op)](_eval(node.left), _eval(node.right)))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS and not node.keywords):
        function, counts = _FUNCTIONS[node.func.id]
        if len(node.args) not in counts:
            raise ValueError(f"{node.func.id} takes {' or '.join(map(str, counts))} "
                             f"argument(s)")
        return _exact(function(*(_eval(arg) for arg in node.args)))
    shown = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
    raise ValueError(f"{shown!r} is not allowed: only {_ALLOWED}")


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        if isinstance(base, Fraction):
            size = math.log2(max(abs(base.numerator), base.denominator))
            if abs(exponent) * size > MAX_BITS:
                raise ValueError("the result is too large")
        return base ** int(exponent)
    if base < 0:
        raise ValueError("a negative number to a fractional power has no real value")
    result: float = float(base) ** float(exponent)  # a real number: the base is not negative
    return result


def _sqrt(value: Number) -> Number:
    if value < 0:
        raise ValueError("a negative number has no real square root")
    if isinstance(value, Fraction):
        top, bottom = math.isqrt(value.numerator), math.isqrt(value.denominator)
        if top * top == value.numerator and bottom * bottom == value.denominator:
            return Fraction(top, bottom)
    return math.sqrt(value)


def _round(value: Number, digits: Number = Fraction(0)) -> Number:
    if not (isinstance(digits, Fraction) and digits.denominator == 1):
        raise ValueError("round's second argument must be a whole number of digits")
    return round(Fraction(value), int(digits))  # a float rounded is exactly what it says


def _exact(value: Number | int) -> Number:
    """Fractions stay fractions: `//` and round() give ints."""
    return Fraction(value) if isinstance(value, int) else value


def _bits(value: Fraction) -> int:
    return max(abs(value.numerator).bit_length(), value.denominator.bit_length())


def _places(value: Fraction) -> int:
    """Decimal places of its exact decimal form; 99 when it has none (1/3)."""
    rest, twos, fives = value.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    return max(twos, fives) if rest == 1 else 99


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: _power, ast.BitXor: _power,  # "2^10": what people (and small models) write
}
_FUNCTIONS: dict[str, tuple[Callable[..., Number], tuple[int, ...]]] = {
    "sqrt": (_sqrt, (1,)), "abs": (abs, (1,)), "round": (_round, (1, 2)),
}
