"""How a collection is stored: the :class:`Collection` folder (:mod:`.collection`), its files and crash protocol
(:mod:`.storage`), the in-memory ids and alive flags (:mod:`.mirror`), typed metadata columns (:mod:`.metadata`),
input checks (:mod:`.inputs`) and the layer protocol for multi-vector collections (:mod:`.layer`); the same API
over Milvus (:mod:`.milvus`, ``Collection.create(..., backend="milvus")``) and what both backends share (:mod:`.base`)."""

from embedlab.index.collection.collection import MAX_K, MAX_RESULTS, Collection

__all__ = ["Collection", "MAX_K", "MAX_RESULTS"]
