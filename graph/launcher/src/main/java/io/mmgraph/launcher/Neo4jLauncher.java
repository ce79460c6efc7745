package io.mmgraph.launcher;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.neo4j.configuration.Config;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.configuration.SettingValueParsers;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.internal.kernel.api.connectioninfo.ClientConnectionInfo;
import org.neo4j.internal.kernel.api.security.AuthenticationResult;
import org.neo4j.io.fs.DefaultFileSystemAbstraction;
import org.neo4j.io.layout.Neo4jLayout;
import org.neo4j.kernel.api.security.AuthManager;
import org.neo4j.kernel.api.security.AuthToken;
import org.neo4j.kernel.api.security.exception.InvalidAuthTokenException;
import org.neo4j.kernel.impl.security.User;
import org.neo4j.kernel.internal.GraphDatabaseAPI;
import org.neo4j.logging.NullLogProvider;
import org.neo4j.memory.EmptyMemoryTracker;
import org.neo4j.server.security.SecureHasher;
import org.neo4j.server.security.SystemGraphCredential;
import org.neo4j.server.security.auth.CommunitySecurityModule;
import org.neo4j.server.security.auth.FileUserRepository;
import org.neo4j.string.UTF8;

/**
 * Runs an embedded Neo4j Community DBMS for mmgraph, reachable only over Bolt on 127.0.0.1.
 *
 * <p>Arguments: {@code --home DIR --port N --password-file FILE --pagecache SIZE
 * [--plugin-dir DIR] [--state-file FILE] [--watch-stdin]}. Auth is on and the {@code neo4j}
 * user's password is the password file's after every start: a new home gets it from the initial
 * user file ({@code data/dbms/auth.ini}) written before its first start, and a restart sets it
 * only when the login check finds it changed. {@code --plugin-dir} names a folder of Open GDS
 * jars (also on the classpath): Neo4j registers their {@code gds.*} procedures, which run
 * unrestricted as GDS asks. Once Bolt accepts connections the launcher writes the state file
 * (pid, port, whether GDS is on) and prints
 * {@code MMGRAPH_NEO4J_READY <port>}. SIGTERM or SIGINT shuts the DBMS down cleanly, removes the
 * state file and exits 0; with {@code --watch-stdin} so does end of input, which is how a parent
 * process that dies in any way takes the server with it.
 */
public final class Neo4jLauncher {
    private static final String READY = "MMGRAPH_NEO4J_READY";

    private static volatile DatabaseManagementService dbms;
    private static volatile Path stateFile;
    private static volatile int exitStatus;

    private Neo4jLauncher() {}

    public static void main(String[] args) {
        // A JVM ended by a signal exits 128+n; a clean shutdown on request is a success.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (dbms != null) {
                dbms.shutdown();
            }
            deleteQuietly(stateFile);
            Runtime.getRuntime().halt(exitStatus);
        }, "mmgraph-neo4j-shutdown"));
        try {
            run(args);
        } catch (Throwable e) {
            e.printStackTrace();
            exitStatus = 1;
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        Map<String, String> opts = parseArgs(args);
        Path home = Path.of(require(opts, "--home")).toAbsolutePath();
        int port = Integer.parseInt(require(opts, "--port"));
        String password =
                Files.readString(Path.of(require(opts, "--password-file")), StandardCharsets.UTF_8)
                        .strip();
        long pagecache = SettingValueParsers.BYTES.parse(require(opts, "--pagecache"));
        Path state = opts.containsKey("--state-file") ? Path.of(opts.get("--state-file")) : null;
        Path pluginDir =
                opts.containsKey("--plugin-dir") ? Path.of(opts.get("--plugin-dir")) : null;

        // Neo4j and its libraries may write to stdout; keep it for our one protocol line.
        PrintStream protocol = System.out;
        System.setOut(System.err);

        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pagecache)
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .setConfig(GraphDatabaseSettings.routing_enabled, false)
                // Netty's default quiet period makes every shutdown wait twice 5 s for nothing.
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0);
        if (pluginDir != null) {
            builder.setConfig(GraphDatabaseSettings.plugin_dir, pluginDir.toAbsolutePath())
                    .setConfig(GraphDatabaseSettings.procedure_unrestricted, List.of("gds.*"));
        }
        // The paths Neo4j derives from the home, as the builder's DBMS will use them.
        Config paths = Config.newBuilder().set(GraphDatabaseSettings.neo4j_home, home).build();
        Path systemDatabase = Neo4jLayout.of(paths).databasesDirectory()
                .resolve(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        if (!Files.exists(systemDatabase)) {
            setInitialPassword(paths, password);
        }
        dbms = builder.build();

        GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        if (!logsIn(system, password)) {
            setPassword(system, password);
        }
        if (state != null) {
            writeState(state, ProcessHandle.current().pid(), port, pluginDir != null);
            stateFile = state;
        }
        protocol.println(READY + " " + port);
        protocol.flush();

        if (opts.containsKey("--watch-stdin")) {
            drain(System.in);
            System.exit(0);
        }
        Thread.currentThread().join();
    }

    /**
     * Gives a new home's {@code neo4j} user the password, with no change required, before the
     * system database is first created, which reads it from there: what {@code neo4j-admin dbms
     * set-initial-password} writes. The login check then passes, where the {@code ALTER USER}
     * that follows it otherwise, the JVM's first Cypher, took about 2 s of a first start.
     */
    private static void setInitialPassword(Config config, String password) throws IOException {
        Path file = CommunitySecurityModule.getInitialUserRepositoryFile(config);
        try (DefaultFileSystemAbstraction fs = new DefaultFileSystemAbstraction()) {
            fs.deleteFile(file); // a file left by a first start that never created the database
            FileUserRepository users = new FileUserRepository(
                    fs, file, NullLogProvider.getInstance(), EmptyMemoryTracker.INSTANCE);
            users.start();
            try {
                users.create(new User("neo4j", null, SystemGraphCredential
                        .createCredentialForPassword(UTF8.encode(password), new SecureHasher()),
                        false, false));
            } finally {
                users.shutdown();
            }
        } catch (Exception e) {
            throw new IOException("could not write the initial password to " + file, e);
        }
    }

    /**
     * Whether the {@code neo4j} user already logs in with {@code password} and needs no change,
     * as a restart and a new home's first start find it (a password file changed since the
     * home's first start holds another). Neo4j's own login check, in about 50 ms: the two
     * {@code ALTER USER} statements {@link #setPassword} ran on every restart, the JVM's first
     * Cypher, took 2-3 s of it on the 2-core VM.
     */
    private static boolean logsIn(GraphDatabaseService system, String password)
            throws InvalidAuthTokenException {
        AuthManager auth = ((GraphDatabaseAPI) system).getDependencyResolver()
                .resolveDependency(AuthManager.class);
        AuthenticationResult result = auth.login(
                        AuthToken.newBasicAuthToken("neo4j", password),
                        ClientConnectionInfo.EMBEDDED_CONNECTION)
                .subject()
                .getAuthenticationResult();
        return result == AuthenticationResult.SUCCESS;
    }

    /**
     * Sets the password with no change required at the next login. Neo4j refuses to set a
     * password to its current value, which is what a restart asks when its login check failed
     * only for a change required.
     */
    private static void setPassword(GraphDatabaseService system, String password) {
        try {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        } catch (QueryExecutionException e) {
            if (!e.getMessage().contains("Old password and new password cannot be the same")) {
                throw e;
            }
            system.executeTransactionally("ALTER USER neo4j SET PASSWORD CHANGE NOT REQUIRED");
        }
    }

    private static void writeState(Path stateFile, long pid, int port, boolean gds)
            throws IOException {
        Path tmp = stateFile.resolveSibling(stateFile.getFileName() + ".tmp");
        Files.writeString(
                tmp, "{\"pid\": " + pid + ", \"port\": " + port + ", \"gds\": " + gds + "}\n");
        Files.move(tmp, stateFile, StandardCopyOption.ATOMIC_MOVE);
    }

    private static void deleteQuietly(Path path) {
        if (path == null) {
            return;
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            System.err.println("could not remove " + path + ": " + e);
        }
    }

    private static void drain(InputStream in) throws IOException {
        byte[] buffer = new byte[256];
        while (in.read(buffer) >= 0) {
            // Nothing is sent on stdin; only its end matters.
        }
    }

    private static Map<String, String> parseArgs(String[] args) {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--watch-stdin")) {
                opts.put(args[i], "true");
            } else if (args[i].startsWith("--") && i + 1 < args.length) {
                opts.put(args[i], args[++i]);
            } else {
                throw new IllegalArgumentException("unexpected argument: " + args[i]);
            }
        }
        return opts;
    }

    private static String require(Map<String, String> opts, String name) {
        String value = opts.get(name);
        if (value == null) {
            throw new IllegalArgumentException("missing argument " + name);
        }
        return value;
    }
}
