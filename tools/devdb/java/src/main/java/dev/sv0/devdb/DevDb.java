package dev.sv0.devdb;

import de.bwaldvogel.mongo.MongoBackend;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.backend.memory.MemoryDatabase;
import de.bwaldvogel.mongo.oplog.Oplog;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.CountDownLatch;

/**
 * devdb: the MongoDB-wire server sv0 develops and tests against.
 *
 * <p>It embeds mongo-java-server and adds only what a test harness needs: a listen address whose
 * bound port is printed as one line on stdout, an optional persistent H2 file, an optional oplog
 * (change streams, with one race closed: {@link InsertSafeOplog}), in-memory collections whose
 * updates never change a document a reply is still encoding ({@link ReadSafeMemoryCollection}),
 * and a clean stop on SIGTERM that flushes the H2 file.
 */
public final class DevDb {

    /**
     * The version devdb reports in the handshake.
     *
     * <p>mongo-java-server's own {@code ServerVersion} enum stops at MongoDB 4.0 (wire version 8),
     * and the Rust driver 3.x refuses any server below wire version 9 (MongoDB 4.4) at handshake. The
     * backend accepts any {@link MongoVersion}, so devdb reports MongoDB 6.0 / wire 17, the oldest
     * MongoDB the product targets. Reporting a version adds no features: its gaps remain, and the
     * stand tests in testkit pin each of them.
     */
    private static final MongoVersion REPORTED_VERSION = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(6, 0, 0);
        }

        @Override
        public int getWireVersion() {
            return 17;
        }
    };

    private static final String USAGE = String.join("\n",
            "usage: java -jar devdb.jar [--listen HOST:PORT] [--data FILE] [--oplog] [--stop-on-stdin-eof] [--verbose]",
            "  --listen HOST:PORT   address to serve on (default 127.0.0.1:0; port 0 picks a free port)",
            "  --data FILE          persist to this H2 file (default: in memory)",
            "  --oplog              enable the oplog, so change streams work (an idle watcher busy-polls a core)",
            "  --stop-on-stdin-eof  stop when standard input closes (a harness dies -> devdb stops)",
            "  --verbose            log every connection (default: errors only)",
            "On start, prints the bound address HOST:PORT as one line on stdout.");

    private DevDb() {
    }

    public static void main(String[] args) throws Exception {
        String host = "127.0.0.1";
        int port = 0;
        String dataFile = null;
        boolean oplog = false;
        boolean stopOnStdinEof = false;
        boolean verbose = false;

        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            switch (arg) {
                case "--listen" -> {
                    String value = valueOf(args, ++i, arg);
                    int colon = value.lastIndexOf(':');
                    if (colon <= 0) {
                        fail("--listen: expected HOST:PORT, got '" + value + "'");
                    }
                    host = value.substring(0, colon);
                    try {
                        port = Integer.parseInt(value.substring(colon + 1));
                    } catch (NumberFormatException e) {
                        fail("--listen: port is not a number in '" + value + "'");
                    }
                    if (port < 0 || port > 65535) {
                        fail("--listen: port " + port + " is out of range 0..65535");
                    }
                }
                case "--data" -> dataFile = valueOf(args, ++i, arg);
                case "--oplog" -> oplog = true;
                case "--stop-on-stdin-eof" -> stopOnStdinEof = true;
                case "--verbose" -> verbose = true;
                case "-h", "--help" -> {
                    System.out.println(USAGE);
                    return;
                }
                default -> fail("unknown argument '" + arg + "'");
            }
        }

        // Must be set before the first logger is created.
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", verbose ? "info" : "error");
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");

        MongoBackend backend = dataFile == null ? new MemoryBackend() {
            @Override
            public MemoryDatabase openOrCreateDatabase(String databaseName) {
                return ReadSafeMemoryCollection.database(databaseName, getCursorRegistry());
            }

            @Override
            protected Oplog createOplog() {
                return new InsertSafeOplog(super.createOplog(), this);
            }
        } : new H2Backend(dataFile) {
            @Override
            protected Oplog createOplog() {
                return new InsertSafeOplog(super.createOplog(), this);
            }
        };
        backend.version(REPORTED_VERSION);
        MongoServer server = new MongoServer(backend);
        if (oplog) {
            server.enableOplog();
        }
        server.bind(host, port);

        CountDownLatch stopped = new CountDownLatch(1);
        // MongoServer.shutdown() closes the backend; for H2 that closes the MVStore, which writes
        // every pending change to the file. Without it up to ~1 s of writes would be lost.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdown();
            stopped.countDown();
        }, "devdb-shutdown"));

        InetSocketAddress bound = server.getLocalAddress();
        System.out.println(bound.getHostString() + ":" + bound.getPort());
        System.out.flush();

        if (stopOnStdinEof) {
            waitForEof(System.in);
            System.exit(0); // runs the shutdown hook
        }
        stopped.await();
    }

    private static void waitForEof(InputStream in) {
        byte[] buffer = new byte[256];
        try {
            while (in.read(buffer) >= 0) {
                // Anything written to stdin is ignored; only its end matters.
            }
        } catch (IOException e) {
            // A broken stdin means the parent is gone, the same as EOF.
        }
    }

    private static String valueOf(String[] args, int index, String flag) {
        if (index >= args.length) {
            fail(flag + ": missing value");
        }
        return args[index];
    }

    private static void fail(String message) {
        System.err.println("devdb: " + message);
        System.err.println(USAGE);
        System.exit(2);
    }
}
