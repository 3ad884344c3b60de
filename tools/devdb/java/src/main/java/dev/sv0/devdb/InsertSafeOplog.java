package dev.sv0.devdb;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.Cursor;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.oplog.Oplog;

import java.util.List;

/**
 * The oplog, with one race of mongo-java-server 1.47.0 closed.
 *
 * <p>Its oplog copies each inserted document after the collection's lock is released. In memory,
 * the copy and the stored document are read from the same object, so an update of that document
 * arriving in between (a worker claiming a job the moment it is enqueued) broke the copy with a
 * {@code ConcurrentModificationException}, and the insert, already applied, was answered with an
 * error that has no code. This wrapper makes the copy under the collection's lock: the collection
 * classes synchronize every operation on themselves. Updates and deletes already call the oplog
 * with that lock held, so the order of locks (the collection, then the oplog's own collection) is
 * the same on every path. testkit/tests/oplog_races.rs pins the race.
 */
final class InsertSafeOplog implements Oplog {

    private final Oplog delegate;
    private final MongoBackend backend;

    InsertSafeOplog(Oplog delegate, MongoBackend backend) {
        this.delegate = delegate;
        this.backend = backend;
    }

    @Override
    public void handleInsert(String namespace, List<Document> documents) {
        Object collection = collectionOf(namespace);
        if (collection == null) {
            delegate.handleInsert(namespace, documents);
            return;
        }
        synchronized (collection) {
            delegate.handleInsert(namespace, documents);
        }
    }

    @Override
    public void handleUpdate(String namespace, Document selector, Document query, List<Object> modifiedIds) {
        delegate.handleUpdate(namespace, selector, query, modifiedIds);
    }

    @Override
    public void handleDelete(String namespace, Document query, List<Object> deletedIds) {
        delegate.handleDelete(namespace, query, deletedIds);
    }

    @Override
    public void handleDropCollection(String namespace) {
        delegate.handleDropCollection(namespace);
    }

    @Override
    public Cursor createCursor(Document changeStreamDocument, String namespace, Aggregation aggregation) {
        return delegate.createCursor(changeStreamDocument, namespace, aggregation);
    }

    /** The collection a namespace ({@code database.collection}) names, or null. */
    private Object collectionOf(String namespace) {
        int dot = namespace.indexOf('.');
        if (dot <= 0) {
            return null;
        }
        MongoDatabase database = backend.resolveDatabase(namespace.substring(0, dot));
        return database == null ? null : database.resolveCollection(namespace.substring(dot + 1), false);
    }
}
