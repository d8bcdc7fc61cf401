"""Request and response bodies. Requests forbid unknown fields (a typo is a 422 naming the field, never a
silently ignored option); sizes are bounded here, before anything reaches a model or the disk."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Id = Annotated[Union[StrictInt, Annotated[str, Field(min_length=1, max_length=512)]], Field()]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="a collection name")]
Metadata = dict[str, Any]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no "10" for 10, no 0 for false


# ---------------------------------------------------------------- /v1/embeddings (OpenAI-compatible)
class EmbeddingRequest(Request):
    input: Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]] = Field(
        description="a text, a list of texts, or token ids (one list, or a list of lists) of the model's vocabulary")
    model: str | None = Field(None, description="a served model (GET /v1/models); the default model when omitted")
    dimensions: int | None = Field(None, ge=1, description="keep the first `dimensions` coordinates (Matryoshka)")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = Field(None, max_length=256, description="accepted for compatibility; not stored")


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage
    truncated: list[int] = Field(description="indices of inputs cut to the model's token limit")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "embedlab"
    task: Literal["embed", "rerank"] = Field(description="embed: an encoder (POST /v1/embeddings, collections); "
                                                         "rerank: a cross-encoder a search names in rerank")
    dim: int = Field(description="the vector width (1 for a reranker: one score per pair)")
    max_tokens: int
    backend: str
    precision: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---------------------------------------------------------------- collections
class CreateCollection(Request):
    name: Name
    dim: int = Field(ge=1, le=65536)
    metric: Literal["cosine", "ip", "l2"] = "cosine"
    index: Literal["flat", "hnsw", "ivf"] | None = None
    model: str | None = Field(None, description="the served model that encodes its texts (default: the server's)")
    params: dict[str, Union[StrictInt, float, StrictStr, None, list[StrictInt]]] = Field(
        default_factory=dict, description="index and compression options, e.g. {\"M\": 32}, {\"codec\": \"int8\"} or "
                                          "{\"funnel\": [64, 384], \"oversample\": 8}")
    multivector: Union[StrictBool, dict[str, Union[StrictInt, float, StrictStr]]] = Field(
        False, description="store token vectors (MUVERA candidates re-ranked by MaxSim); options such as candidates")
    schema_: dict[str, Literal["str", "int", "float", "bool", "list[str]"]] | None = Field(None, alias="schema")
    indexes: list[str] | None = Field(None, max_length=256, description="schema fields given payload indexes (default: "
                                                                        "every field; [] for none)")
    text_index: StrictBool = Field(False, description="keep a BM25 index of the stored texts (search mode sparse / hybrid)")


class CollectionInfo(BaseModel):
    name: str
    dim: int
    metric: str
    index: str
    model: str | None
    multivector: bool
    count: int
    schema_: dict[str, str] = Field(alias="schema")
    stats: dict[str, Any]


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class Documents(Request):
    ids: list[Id] = Field(min_length=1)
    texts: list[StrictStr] | None = Field(None, min_length=1)
    vectors: list[list[float]] | None = Field(None, min_length=1)
    metadata: list[Metadata | None] | None = None
    upsert: bool = False


class DeleteDocuments(Request):
    ids: list[Id] | None = Field(None, min_length=1)
    filter: str | None = Field(None, max_length=8192)


class WriteResult(BaseModel):
    count: int = Field(description="documents written or deleted")
    total: int = Field(description="documents in the collection after the write")


class Document(BaseModel):
    id: Id
    text: str | None
    metadata: Metadata


class SearchRequest(Request):
    queries: list[StrictStr] | None = Field(None, min_length=1)
    vectors: list[list[float]] | None = Field(None, min_length=1)
    k: int = Field(10, ge=1)
    filter: str | None = Field(None, max_length=8192)
    offset: int = Field(0, ge=0)
    min_score: float | None = None
    ef: int | None = Field(None, ge=1)
    oversample: int | None = Field(None, ge=1, le=1024)
    mode: Literal["dense", "sparse", "hybrid"] = Field(
        "dense", description="dense (vectors), sparse (BM25 over the stored texts) or hybrid (both, fused); the last two "
                             "need a collection created with text_index and the query texts in queries")
    fusion: Literal["rrf", "weighted", "dbsf"] = "rrf"
    weights: list[float] | None = Field(None, max_length=8, description="hybrid: (dense, sparse) weights")
    rerank: str | None = Field(None, max_length=128, description="a served reranker (GET /v1/models, task rerank) "
                                                                 "that re-orders the first rerank_candidates hits of "
                                                                 "each query by (query text, stored text)")
    rerank_candidates: int = Field(100, ge=1, le=1000, description="hits per query the reranker scores")
    rerank_weights: list[float] | None = Field(None, max_length=8, description="rerank: (first stage, reranker) "
                                                                              "weights of a DBSF fusion of the two "
                                                                              "stages' scores; none: reranker order")


class Hit(BaseModel):
    id: Id
    score: float
    text: str | None
    metadata: Metadata | None


class QueryResult(BaseModel):
    hits: list[Hit]
    strategy: str


class SearchResponse(BaseModel):
    results: list[QueryResult]


class Health(BaseModel):
    status: str
    models: list[str] = []
    collections: int = 0
