"""`AVLTree`: a balanced search tree of ``(value, pk)`` tuples, at the reference's path.

Provided for code written against the reference DictDB (``dictdb.index.avl``), whose sorted
index keeps its entries in such a tree. dictdb itself does not use it: sorted indexes keep
their keys in a sortedcontainers ``SortedDict`` (ARCHITECTURE.md R27), several times faster
to build than a tree written in Python (see the note on the dependency in pyproject.toml).

Keys are tuples compared as Python compares tuples, so every key of one tree must compare
with every other; a key already present is not added again. The range methods (``iter_lt``
... ``iter_between``) compare a key's first member, the value, with their bounds; the bisect
methods compare a key's leading members with a possibly shorter key, so ``bisect_left((v,))``
is the position of the first key whose value is ``v``.

Every node records its height and the size of its subtree. The AVL invariant (the heights of
a node's two subtrees differ by at most one, `AVLTree._balance_factor`) bounds the height by
about 1.44 log2(n), so `add`, `discard` and the bisect methods take O(log n), and the
iterators reach their first key in O(log n), then yield each next one in amortized O(1) with
an explicit stack. Changing the tree while iterating over it is not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import takewhile
from typing import Any

import attrs


@attrs.define(eq=False)
class AVLNode:
    """One key of an `AVLTree`, with its subtrees, its height and its subtree's size.

    Nodes compare by identity: two nodes are the same position in a tree or different ones.
    """

    key: tuple[Any, Any]
    left: AVLNode | None = None
    right: AVLNode | None = None
    height: int = 1
    size: int = 1


class AVLTree:
    """A sorted set of ``(value, pk)`` tuples in an AVL tree.

    The empty tree has ``_root`` None; ``len(tree)`` and iteration follow the key order.
    """

    __slots__ = ("_root",)

    def __init__(self) -> None:
        self._root: AVLNode | None = None

    def __len__(self) -> int:
        """The number of keys in the tree."""
        return _size(self._root)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """Every key, in ascending order."""
        return self._ascend(None)

    def add(self, key: tuple[Any, Any]) -> None:
        """Insert *key*, unless the tree already holds it.

        Args:
            key: a ``(value, pk)`` tuple comparable with the keys already in the tree.
        """
        self._root = _insert(self._root, key)

    def discard(self, key: tuple[Any, Any]) -> None:
        """Remove *key* if the tree holds it; otherwise do nothing.

        Args:
            key: a ``(value, pk)`` tuple.
        """
        self._root = _remove(self._root, key)

    def bisect_left(self, key: tuple[Any, ...]) -> int:
        """The index at which *key* would be inserted, before any equal key.

        Args:
            key: a full key or a prefix of one, such as ``(value,)``: each stored key is
                compared by as many leading members as *key* has.

        Returns:
            The number of stored keys whose prefix is less than *key*.
        """
        width = len(key)
        position = 0
        node = self._root
        while node is not None:
            if key <= node.key[:width]:
                node = node.left
            else:
                position += _size(node.left) + 1
                node = node.right
        return position

    def bisect_right(self, key: tuple[Any, ...]) -> int:
        """The index at which *key* would be inserted, after any equal key.

        Args:
            key: a full key or a prefix of one, such as ``(value,)``.

        Returns:
            The number of stored keys whose prefix is less than or equal to *key*.
        """
        width = len(key)
        position = 0
        node = self._root
        while node is not None:
            if key < node.key[:width]:
                node = node.left
            else:
                position += _size(node.left) + 1
                node = node.right
        return position

    def iter_lt(self, value: Any) -> Iterator[tuple[Any, Any]]:
        """The keys whose value is less than *value*, in ascending order."""
        return takewhile(lambda key: key[0] < value, self._ascend(None))

    def iter_lte(self, value: Any) -> Iterator[tuple[Any, Any]]:
        """The keys whose value is less than or equal to *value*, in ascending order."""
        return takewhile(lambda key: key[0] <= value, self._ascend(None))

    def iter_gt(self, value: Any) -> Iterator[tuple[Any, Any]]:
        """The keys whose value is greater than *value*, in ascending order."""
        return self._ascend(lambda v: v <= value)

    def iter_gte(self, value: Any) -> Iterator[tuple[Any, Any]]:
        """The keys whose value is greater than or equal to *value*, in ascending order."""
        return self._ascend(lambda v: v < value)

    def iter_eq(self, value: Any) -> Iterator[tuple[Any, Any]]:
        """The keys whose value equals *value*, in ascending order (of their pk)."""
        return takewhile(lambda key: key[0] == value, self._ascend(lambda v: v < value))

    def iter_between(
        self, low: Any, high: Any, inclusive: bool = True
    ) -> Iterator[tuple[Any, Any]]:
        """The keys whose value lies between *low* and *high*, in ascending order.

        Args:
            low: the lower bound.
            high: the upper bound; nothing is yielded when it is below *low*.
            inclusive: whether keys whose value equals a bound are included (both bounds
                alike).

        Returns:
            An iterator of ``(value, pk)`` tuples.
        """
        if inclusive:
            return takewhile(lambda key: key[0] <= high, self._ascend(lambda v: v < low))
        return takewhile(lambda key: key[0] < high, self._ascend(lambda v: v <= low))

    def _balance_factor(self, node: AVLNode) -> int:
        """The height of *node*'s left subtree minus its right one's: -1, 0 or 1 when balanced."""
        return _balance(node)

    def _ascend(self, below: Callable[[Any], bool] | None) -> Iterator[tuple[Any, Any]]:
        """The keys in ascending order, from the first whose value is not *below* the start.

        *below* holds for a prefix of the values (those before the start), so the descent
        skips every subtree it holds for; None starts at the smallest key.
        """
        stack: list[AVLNode] = []
        node = self._root
        while node is not None:
            if below is not None and below(node.key[0]):
                node = node.right
            else:
                stack.append(node)
                node = node.left
        while stack:
            node = stack.pop()
            yield node.key
            node = node.right
            while node is not None:
                stack.append(node)
                node = node.left


# -- the tree algorithms, on nodes: each returns the new root of the subtree it was given ------


def _height(node: AVLNode | None) -> int:
    return 0 if node is None else node.height


def _size(node: AVLNode | None) -> int:
    return 0 if node is None else node.size


def _balance(node: AVLNode) -> int:
    return _height(node.left) - _height(node.right)


def _refresh(node: AVLNode) -> None:
    """Recompute *node*'s height and size from its children's."""
    left, right = node.left, node.right
    node.height = 1 + max(_height(left), _height(right))
    node.size = 1 + _size(left) + _size(right)


def _rotate_right(node: AVLNode) -> AVLNode:
    """Lift *node*'s left child above it."""
    pivot = node.left
    assert pivot is not None  # only called on a left-heavy node
    node.left = pivot.right
    pivot.right = node
    _refresh(node)
    _refresh(pivot)
    return pivot


def _rotate_left(node: AVLNode) -> AVLNode:
    """Lift *node*'s right child above it."""
    pivot = node.right
    assert pivot is not None  # only called on a right-heavy node
    node.right = pivot.left
    pivot.left = node
    _refresh(node)
    _refresh(pivot)
    return pivot


def _rebalance(node: AVLNode) -> AVLNode:
    """Refresh *node* after a change below it; rotate if its subtrees' heights differ by 2."""
    _refresh(node)
    balance = _balance(node)
    if balance > 1:
        assert node.left is not None  # a height difference of 2 needs a left child
        if _balance(node.left) < 0:
            node.left = _rotate_left(node.left)
        return _rotate_right(node)
    if balance < -1:
        assert node.right is not None
        if _balance(node.right) > 0:
            node.right = _rotate_right(node.right)
        return _rotate_left(node)
    return node


def _insert(node: AVLNode | None, key: tuple[Any, Any]) -> AVLNode:
    if node is None:
        return AVLNode(key)
    if key < node.key:
        node.left = _insert(node.left, key)
    elif node.key < key:
        node.right = _insert(node.right, key)
    else:
        return node
    return _rebalance(node)


def _remove(node: AVLNode | None, key: tuple[Any, Any]) -> AVLNode | None:
    if node is None:
        return None
    if key < node.key:
        node.left = _remove(node.left, key)
    elif node.key < key:
        node.right = _remove(node.right, key)
    elif node.left is None:
        return node.right
    elif node.right is None:
        return node.left
    else:
        # Two children: the smallest key of the right subtree takes the removed node's place.
        successor, rest = _pop_smallest(node.right)
        successor.left, successor.right = node.left, rest
        node = successor
    return _rebalance(node)


def _pop_smallest(node: AVLNode) -> tuple[AVLNode, AVLNode | None]:
    """Detach the leftmost node of the subtree; return it and the subtree's new root."""
    if node.left is None:
        return node, node.right
    smallest, node.left = _pop_smallest(node.left)
    return smallest, _rebalance(node)
