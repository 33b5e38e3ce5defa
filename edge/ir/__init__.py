"""The intermediate representation shared by every stage."""

from edge.ir.graph import Dim, Graph, Node, Shape, Value, captured_values
from edge.ir.printer import format_graph, format_node
from edge.ir.verify import verify

__all__ = ["Dim", "Graph", "Node", "Shape", "Value", "captured_values", "format_graph", "format_node", "verify"]
