"""Overlay metrics on graphs whose answers are known by hand."""

from __future__ import annotations

import random

import pytest

from partisan.membership import metrics

TRIANGLE_AND_TAIL = {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b", "d"], "d": ["c"]}


def test_in_degree_histogram_counts_only_known_nodes() -> None:
    assert metrics.in_degrees(TRIANGLE_AND_TAIL) == {1: 1, 2: 2, 3: 1}
    assert metrics.in_degrees({"a": ["gone"], "b": ["a"]}) == {0: 1, 1: 1}


def test_clustering_of_a_triangle_with_a_tail() -> None:
    # a, b: 1; c: 1 link among 3 neighbours -> 2/6; d: fewer than 2 neighbours -> 0
    assert metrics.clustering(TRIANGLE_AND_TAIL) == pytest.approx((1 + 1 + 1 / 3 + 0) / 4)
    assert metrics.clustering({}) == 0.0


def test_average_shortest_path_exact_and_sampled() -> None:
    path = {str(i): [str(j) for j in (i - 1, i + 1) if 0 <= j < 4] for i in range(4)}
    # pairs of a 4-node path: distances 1,2,3,1,2,1 each way -> 20/12
    assert metrics.avg_shortest_path(path) == (pytest.approx(20 / 12), 4)
    value, used = metrics.avg_shortest_path(path, sources=2, rng=random.Random(1))
    assert used == 2 and 1.0 <= value <= 2.0


def test_components_connectivity_and_symmetry() -> None:
    graph = {"a": ["b"], "b": [], "c": ["d"], "d": ["c"], "e": []}
    assert metrics.components(graph) == [["a", "b"], ["c", "d"], ["e"]]
    assert not metrics.is_connected(graph) and metrics.is_connected({"a": ["b"], "b": []})
    assert not metrics.is_symmetric(graph)  # a -> b without b -> a
    assert metrics.is_symmetric(TRIANGLE_AND_TAIL)
    assert metrics.is_symmetric({"a": ["dead"]})  # edges to nodes outside the graph are ignored
