"""Convert between our plain types and LlamaIndex nodes / query bundles. No logic beyond that.

Texts become ``TextNode`` s, images ``ImageNode`` s (``image_path`` / ``image_url``, never base64),
and a mixed ``"image+text"`` candidate (a document page) a ``Node`` with a ``text_resource`` and
an ``image_resource``: an ``ImageNode``'s content blocks hold only its image, while a ``Node``'s
hold its text and its image, so a multimodal LLM (``multimodal=True`` synthesizers) receives both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, ImageNode, MediaResource, Node, NodeWithScore, QueryBundle, TextNode

from ...errors import ConfigError
from ...media import is_url
from ...types import MIXED, MODALITY, RETRIEVAL_SCORE, Candidate, ImageSource, Query


def candidate_to_node(candidate: Candidate) -> NodeWithScore:
    """A :class:`Candidate` as a ``NodeWithScore`` (see the module docstring)."""
    metadata: dict[str, Any] = dict(candidate.metadata)
    metadata[MODALITY] = candidate.modality
    if candidate.score is not None:
        metadata[RETRIEVAL_SCORE] = candidate.score
    uri = candidate.image_path
    path, url = (None, uri) if uri is not None and is_url(uri) else (uri, None)
    if candidate.modality == MIXED:
        image = MediaResource(path=path, url=url) if uri is not None else None
        node: BaseNode = Node(id_=candidate.id, text_resource=MediaResource(text=candidate.text or ""), image_resource=image, metadata=metadata)
    elif candidate.modality == "image":
        node = ImageNode(id_=candidate.id, text=candidate.text or "", image_path=path, image_url=url, metadata=metadata)
    else:
        node = TextNode(id_=candidate.id, text=candidate.text or "", metadata=metadata)
    # Long provenance values must not leak into the LLM prompt or the embedding text.
    node.excluded_llm_metadata_keys = list(metadata)
    node.excluded_embed_metadata_keys = list(metadata)
    return NodeWithScore(node=node, score=candidate.score)


def node_to_candidate(node_with_score: NodeWithScore) -> Candidate:
    """The :class:`Candidate` behind a ``NodeWithScore`` (any node type LlamaIndex produces)."""
    node = node_with_score.node
    image = _node_image(node)
    text = node.get_content() if hasattr(node, "get_content") else None
    metadata = dict(node.metadata or {})
    is_reference = isinstance(image, str) and (is_url(image) or not _is_inline(node))
    page = metadata.get(MODALITY) == MIXED or (isinstance(node, Node) and image is not None and bool(text))
    return Candidate(
        id=node.node_id,
        modality=MIXED if page else ("image" if image is not None else "text"),
        text=text or None,
        image_path=image if is_reference else None,
        score=node_with_score.score,
        metadata=metadata,
        image=None if is_reference else image,
    )


def apply_result(
    nodes: Sequence[NodeWithScore], indices: Sequence[int], candidates: Sequence[Candidate]
) -> list[NodeWithScore]:
    """``nodes[indices[k]]`` with ``candidates[k]``'s score and metadata, in that order.

    Provenance keys the core added are hidden from LLM prompts and embeddings.
    """
    out = []
    for index, candidate in zip(indices, candidates):
        node = nodes[index].node
        added = [k for k in candidate.metadata if k not in node.metadata or node.metadata[k] != candidate.metadata[k]]
        node.metadata.update(candidate.metadata)
        node.excluded_llm_metadata_keys = list(dict.fromkeys([*node.excluded_llm_metadata_keys, *added]))
        node.excluded_embed_metadata_keys = list(dict.fromkeys([*node.excluded_embed_metadata_keys, *added]))
        out.append(NodeWithScore(node=node, score=candidate.score))
    return out


def _is_inline(node: BaseNode) -> bool:
    """True when the node's image is base64 data rather than a path or URL."""
    if isinstance(node, ImageNode):
        return not (node.image_path or node.image_url) and bool(node.image)
    resource = getattr(node, "image_resource", None)
    return resource is not None and not getattr(resource, "path", None) and not getattr(resource, "url", None)


def _node_image(node: BaseNode) -> ImageSource | None:
    """Path, URL or base64 data of a node's image, if it has one."""
    if isinstance(node, ImageNode):
        return node.image_path or node.image_url or node.image or None
    resource = getattr(node, "image_resource", None)  # llama-index Node with media resources
    if resource is not None:
        if getattr(resource, "path", None):
            return str(resource.path)
        if getattr(resource, "url", None):
            return str(resource.url)
        if getattr(resource, "data", None):
            return resource.data.decode() if isinstance(resource.data, bytes) else resource.data
    return None


def query_from_bundle(query: str | QueryBundle | Query, image: ImageSource | None = None) -> Query:
    """Our :class:`Query` from a string, a ``QueryBundle`` (``image_path`` → image) or a Query."""
    if isinstance(query, Query):
        if image is not None:
            return Query(text=query.text, image=image)
        return query
    if isinstance(query, QueryBundle):
        text = query.query_str or None
        image = image if image is not None else query.image_path
        return Query(text=text, image=image)
    if isinstance(query, str) or query is None:
        return Query(text=query or None, image=image)
    raise ConfigError(f"unsupported query type: {type(query).__name__}")


__all__ = [
    "MODALITY",
    "RETRIEVAL_SCORE",
    "candidate_to_node",
    "node_to_candidate",
    "apply_result",
    "query_from_bundle",
]
