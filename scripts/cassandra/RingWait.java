// RingWait: waits until a local Cassandra cluster's gossip agrees with what scripts/cql-cluster
// expects, reading each running node's own view over its local-only JMX port.
//
//   java -cp <dir of RingWait.class> RingWait TIMEOUT_S UP DOWN
//     UP    comma-separated addr@jmxport of the nodes that must be running (may be "-")
//     DOWN  comma-separated addr of the nodes that must be down (may be "-")
//
// Settled means, for every node of UP, seen through its own JMX:
//   - it has joined the ring (operation mode NORMAL) and serves CQL;
//   - every node of UP is in its live set, and no node of DOWN is;
//   - every live node reports one and the same schema version.
// Exit 0 once settled (printing each node's view), 1 on timeout (printing the last view and
// what was missing), 2 on bad arguments. Only JDK classes are used, so no Cassandra jar is
// needed on the class path; a JVM per wait, not per node and poll, keeps the CPU cost low.

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public final class RingWait {
    private static final String STORAGE_SERVICE = "org.apache.cassandra.db:type=StorageService";

    private RingWait() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: RingWait TIMEOUT_S UP(addr@jmx,...|-) DOWN(addr,...|-)");
            System.exit(2);
        }
        // A hung node must not hang the wait: bound every RMI call.
        System.setProperty("sun.rmi.transport.tcp.responseTimeout", "5000");
        System.setProperty("sun.rmi.transport.connectionTimeout", "3000");
        long deadline = System.nanoTime() + Long.parseLong(args[0]) * 1_000_000_000L;
        Map<String, Integer> up = new HashMap<>();
        for (String item : list(args[1])) {
            String[] parts = item.split("@", 2);
            if (parts.length != 2) {
                System.err.println("bad UP item " + item + ": expected addr@jmxport");
                System.exit(2);
            }
            up.put(parts[0], Integer.parseInt(parts[1]));
        }
        Set<String> down = new HashSet<>(list(args[2]));
        Map<String, JMXConnector> connections = new HashMap<>();
        String missing = "nothing checked yet";
        try {
            while (true) {
                List<String> views = new ArrayList<>();
                missing = check(up, down, connections, views);
                if (missing == null) {
                    for (String view : views) {
                        System.out.println(view);
                    }
                    System.exit(0);
                }
                if (System.nanoTime() > deadline) {
                    for (String view : views) {
                        System.err.println(view);
                    }
                    System.err.println("ring not settled: " + missing);
                    System.exit(1);
                }
                Thread.sleep(250);
            }
        } finally {
            for (JMXConnector c : connections.values()) {
                try {
                    c.close();
                } catch (Exception ignored) {
                    // Closing is best effort; the JVM is about to exit.
                }
            }
        }
    }

    private static List<String> list(String arg) {
        List<String> out = new ArrayList<>();
        if (!arg.equals("-")) {
            for (String s : arg.split(",")) {
                if (!s.isEmpty()) {
                    out.add(s);
                }
            }
        }
        return out;
    }

    /** Null when settled, else what is still missing; appends one line per node to views. */
    private static String check(Map<String, Integer> up, Set<String> down,
            Map<String, JMXConnector> connections, List<String> views) {
        String missing = null;
        Set<String> schemas = new HashSet<>();
        for (Map.Entry<String, Integer> node : up.entrySet()) {
            String addr = node.getKey();
            try {
                MBeanServerConnection mbs = connect(addr, node.getValue(), connections);
                ObjectName ss = new ObjectName(STORAGE_SERVICE);
                String mode = (String) mbs.getAttribute(ss, "OperationMode");
                boolean cql = (Boolean) mbs.getAttribute(ss, "NativeTransportRunning");
                @SuppressWarnings("unchecked")
                List<String> live = (List<String>) mbs.getAttribute(ss, "LiveNodes");
                @SuppressWarnings("unchecked")
                List<String> unreachable = (List<String>) mbs.getAttribute(ss, "UnreachableNodes");
                @SuppressWarnings("unchecked")
                Map<String, List<String>> versions = (Map<String, List<String>>) mbs.getAttribute(
                        new ObjectName("org.apache.cassandra.db:type=StorageProxy"), "SchemaVersions");
                views.add(addr + ": mode=" + mode + " cql=" + cql + " live=" + live
                        + " unreachable=" + unreachable + " schema=" + versions.keySet());
                for (String version : versions.keySet()) {
                    if (!version.equals("UNREACHABLE")) {
                        schemas.add(version);
                    }
                }
                if (!mode.equals("NORMAL") || !cql) {
                    missing = first(missing, addr + " is " + mode + (cql ? "" : " without CQL"));
                }
                for (String other : up.keySet()) {
                    if (!live.contains(other)) {
                        missing = first(missing, addr + " does not see " + other + " up");
                    }
                }
                for (String other : down) {
                    if (live.contains(other)) {
                        missing = first(missing, addr + " still sees " + other + " up");
                    }
                }
            } catch (Exception e) {
                // Not listening yet, or restarted: reconnect on the next round.
                JMXConnector stale = connections.remove(addr);
                if (stale != null) {
                    try {
                        stale.close();
                    } catch (Exception ignored) {
                        // The connection is being dropped anyway.
                    }
                }
                views.add(addr + ": no JMX answer (" + e.getClass().getSimpleName() + ")");
                missing = first(missing, addr + " does not answer JMX");
            }
        }
        if (missing == null && schemas.size() > 1) {
            missing = "schema versions disagree: " + schemas;
        }
        return missing;
    }

    private static String first(String current, String next) {
        return current != null ? current : next;
    }

    private static MBeanServerConnection connect(String addr, int port,
            Map<String, JMXConnector> connections) throws Exception {
        JMXConnector c = connections.get(addr);
        if (c == null) {
            JMXServiceURL url = new JMXServiceURL(
                    "service:jmx:rmi:///jndi/rmi://127.0.0.1:" + port + "/jmxrmi");
            c = JMXConnectorFactory.connect(url, null);
            connections.put(addr, c);
        }
        return c.getMBeanServerConnection();
    }
}
