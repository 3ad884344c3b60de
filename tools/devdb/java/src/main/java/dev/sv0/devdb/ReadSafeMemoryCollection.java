package dev.sv0.devdb;

import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.ArrayFilters;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.memory.MemoryCollection;
import de.bwaldvogel.mongo.backend.memory.MemoryDatabase;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.oplog.Oplog;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;

/**
 * The in-memory collection, with one race of mongo-java-server 1.47.0 closed.
 *
 * <p>Its reads answer with the very {@code Document} objects the collection stores: a find (and the
 * rest of its result, kept for {@code getMore}), an aggregate (whose stages also run on them) and a
 * {@code findAndModify} answering the new document. The reply is encoded to BSON after the
 * collection's lock is released, and an update changed the stored document in place (it removes
 * and adds entries of its map), so an update at that moment broke the encoding with a
 * {@code ConcurrentModificationException} and the server closed the connection.
 *
 * <p>This class makes a stored document immutable instead: an update is handed a copy of each
 * document it matched, changes the copy, and {@link #handleUpdate} (the library's hook, called with
 * the position and the changed document) stores the copy in the original's place. A reader holding
 * the original keeps a consistent document. Copying on the way out instead would copy every
 * document of a collection for each aggregate (a {@code count_documents}), inside the lock; this
 * copies only what is written. testkit/tests/encode_races.rs pins the race.
 */
final class ReadSafeMemoryCollection extends MemoryCollection {

    /** MemoryCollection's private list of documents, indexed by position. */
    private static final Field DOCUMENTS = documentsField();

    private final List<Document> documents;

    /** True while this collection updates documents; guarded by this. */
    private boolean updating;

    @SuppressWarnings("unchecked")
    private ReadSafeMemoryCollection(MongoDatabase database, String collectionName,
                                     CollectionOptions options, CursorRegistry cursorRegistry) {
        super(database, collectionName, options, cursorRegistry);
        try {
            documents = (List<Document>) DOCUMENTS.get(this);
        } catch (IllegalAccessException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A memory database whose collections are this class. */
    static MemoryDatabase database(String databaseName, CursorRegistry cursors) {
        return new MemoryDatabase(databaseName, cursors) {
            @Override
            protected MemoryCollection openOrCreateCollection(String collectionName, CollectionOptions options) {
                return new ReadSafeMemoryCollection(this, collectionName, options, cursorRegistry);
            }
        };
    }

    @Override
    public synchronized Document updateDocuments(Document selector, Document updateQuery, ArrayFilters arrayFilters,
                                                 boolean isMulti, boolean isUpsert, Oplog oplog) {
        updating = true;
        try {
            return super.updateDocuments(selector, updateQuery, arrayFilters, isMulti, isUpsert, oplog);
        } finally {
            updating = false;
        }
    }

    @Override
    public synchronized Document findAndModify(Document query) {
        updating = true;
        try {
            return super.findAndModify(query);
        } finally {
            updating = false;
        }
    }

    /** The documents an update matched reach it through here: it gets copies to change. */
    @Override
    protected QueryResult createQueryResult(List<Document> matchedDocuments, int batchSize) {
        if (!updating) {
            return super.createQueryResult(matchedDocuments, batchSize);
        }
        List<Document> copies = new ArrayList<>(matchedDocuments.size());
        for (Document document : matchedDocuments) {
            copies.add(document.cloneDeeply());
        }
        return super.createQueryResult(copies, batchSize);
    }

    /** Called under the lock once an update has changed its copy: the copy replaces the original. */
    @Override
    protected void handleUpdate(Integer position, Document oldDocument, Document newDocument) {
        documents.set(position, newDocument);
    }

    private static Field documentsField() {
        try {
            Field field = MemoryCollection.class.getDeclaredField("documents");
            field.setAccessible(true);
            return field;
        } catch (NoSuchFieldException e) {
            // Only a different mongo-java-server version gets here, at devdb's first collection.
            throw new IllegalStateException("MemoryCollection has no 'documents' list to update", e);
        }
    }
}
