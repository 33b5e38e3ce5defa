"""The intermediate representation shared by every stage."""

from edge.ir.domains import EDGETRT_DOMAIN, standard_domain
from edge.ir.graph import Dim, Graph, Node, Shape, Value, captured_values
from edge.ir.printer import format_graph, format_node
from edge.ir.sequence import TensorSequence
from edge.ir.verify import verify

__all__ = ["EDGETRT_DOMAIN", "standard_domain", "Dim", "Graph", "Node", "Shape", "Value", "captured_values", "format_graph", "format_node", "TensorSequence", "verify"]
