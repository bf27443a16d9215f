"""A page (mixed "image+text" candidate) survives the round trip through each framework's type,
carrying both its text and its image where that framework's generators look for them."""

from __future__ import annotations

import pytest

from mm_rag_components.errors import ConfigError
from mm_rag_components.types import MIXED, Candidate

META = {"page_id": "report-7", "page": 7, "page_count": 12, "title": "Annual report", "file_name": "report.pdf",
        "source": "/docs/report.pdf", "score_scale": "rrf", "image_rank": 2, "text_rank": 1}


def page(image_path: str | None = "/cache/pages/report-7.png") -> Candidate:
    return Candidate(id="report-7", modality=MIXED, text="Revenue grew by 12% in the third quarter.", image_path=image_path,
                     score=0.0325, metadata=dict(META))


def same(a: Candidate, b: Candidate) -> None:
    assert (b.id, b.modality, b.text, b.image_path, b.score) == (a.id, a.modality, a.text, a.image_path, a.score)
    assert {k: b.metadata[k] for k in META} == META


@pytest.mark.parametrize("image_path", ["file", "https://example.com/report-7.png", None])
def test_llama_index_node_holds_text_and_image(image_path, tmp_path) -> None:
    from llama_index.core.base.llms.types import ImageBlock, TextBlock
    from llama_index.core.schema import MetadataMode, Node
    from PIL import Image

    from mm_rag_components.integrations.llama_index.nodes import candidate_to_node, node_to_candidate

    if image_path == "file":  # LlamaIndex checks that an image block's path exists
        image_path = str(tmp_path / "report-7.png")
        Image.new("RGB", (4, 4)).save(image_path)
    node = candidate_to_node(page(image_path))
    assert isinstance(node.node, Node) and node.node.get_content() == page().text
    blocks = node.node.get_content_blocks(MetadataMode.LLM)  # what multimodal=True synthesizers send
    assert [type(b) for b in blocks] == ([TextBlock, ImageBlock] if image_path else [TextBlock]) and blocks[0].text == page().text
    if image_path:
        assert image_path in (str(blocks[1].path), str(blocks[1].url))
    assert not node.node.get_metadata_str(MetadataMode.LLM)  # provenance stays out of the prompt
    same(page(image_path), node_to_candidate(node))


def test_llama_index_nodes_of_other_kinds_keep_their_modality() -> None:
    from llama_index.core.schema import ImageNode, MediaResource, Node, NodeWithScore, TextNode

    from mm_rag_components.integrations.llama_index.nodes import candidate_to_node, node_to_candidate

    assert isinstance(candidate_to_node(Candidate(id="i", modality="image", image_path="/x.png", text="cap")).node, ImageNode)
    assert isinstance(candidate_to_node(Candidate(id="t", modality="text", text="t")).node, TextNode)
    both = Node(id_="n", text_resource=MediaResource(text="page text"), image_resource=MediaResource(path="/p.png"))
    assert node_to_candidate(NodeWithScore(node=both)).modality == MIXED  # a foreign multimodal node is a page
    only_image = Node(id_="n", image_resource=MediaResource(path="/p.png"))
    assert node_to_candidate(NodeWithScore(node=only_image)).modality == "image"


@pytest.mark.parametrize("image_path", ["/cache/pages/report-7.png", "/docs/report.pdf", None])
def test_haystack_document_holds_text_file_path_and_page_number(image_path) -> None:
    from mm_rag_components.integrations.haystack.documents import candidate_to_document, document_to_candidate

    document = candidate_to_document(page(image_path))
    assert document.content == page().text and document.meta["page_number"] == 7 and document.meta["modality"] == MIXED
    assert document.meta.get("file_path") == image_path
    same(page(image_path), document_to_candidate(document))


def test_haystack_page_with_an_inline_image_travels_as_a_blob() -> None:
    import io

    from PIL import Image

    from mm_rag_components.integrations.haystack.documents import candidate_to_document, document_to_candidate

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, format="PNG")
    candidate = Candidate(id="p", modality=MIXED, text="page", image=buffer.getvalue(), metadata={"page": 1})
    document = candidate_to_document(candidate)
    assert document.blob is not None and document.blob.mime_type == "image/png" and document.content == "page"
    back = document_to_candidate(document)
    assert back.modality == MIXED and back.image == buffer.getvalue() and back.text == "page"


@pytest.mark.parametrize("image_path", ["/cache/pages/report-7.png", "https://example.com/report-7.png", None])
def test_langchain_document_holds_text_and_image_reference(image_path) -> None:
    from mm_rag_components.integrations.langchain.documents import candidate_to_document, document_to_candidate

    document = candidate_to_document(page(image_path))
    assert document.page_content == page().text and document.metadata["modality"] == MIXED
    assert document.metadata.get("image_path") == image_path
    same(page(image_path), document_to_candidate(document, 0))


def test_langchain_page_never_reads_its_document_source_as_an_image() -> None:
    from langchain_core.documents import Document

    from mm_rag_components.integrations.langchain.documents import document_to_candidate

    back = document_to_candidate(Document(page_content="text", metadata={"modality": MIXED, "source": "/docs/report.pdf"}), 0)
    assert back.modality == MIXED and back.image_path is None  # scored on its text, flagged missing_image
    with pytest.raises(ConfigError, match="image_path"):
        document_to_candidate(Document(page_content="t", metadata={"modality": MIXED, "image_path": 42}), 0)
