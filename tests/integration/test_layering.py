"""The layering of docs/architecture.md (issue 12): which module may use
which, checked two ways, and no cycles.

- #include lines: each src/<module>/ includes only the modules LAYERS
  allows it, the module graph has no cycle, flows/ never includes http/
  or microhttpd, only jose/ includes cjose.
- calls: `nm` of the built objects of the four internal libraries gives
  the file-to-file call graph. No object calls a library it may not link
  (core calls no one, server and provider only core), the provider's flow
  layer and flows/ call nothing of http/, and the graph has no cycle
  except the ones KNOWN_CYCLES lists (to break next, see the doc): a new
  cycle, or a known one that grew, fails here.
The checker itself is tested on small graphs with and without a cycle."""
import os
import re
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
SRC = os.path.join(SOURCE_DIR, "src")
BIN_DIR = os.environ.get("AUTHMD_BIN_DIR", os.path.join(SOURCE_DIR, "build"))

# Module -> the modules it may include (itself always). "server" is
# src/server/main.c, the server's program; "authmd" is include/authmd/.
LAYERS = {
    "core": set(),
    "store": {"core"},
    "jose": {"core"},
    "http": {"core"},
    "mail": {"core", "store"},
    "trust": {"core", "jose"},
    "flows": {"core", "store", "jose", "mail", "trust"},
    "service": {"core", "store", "jose", "http", "mail", "trust", "flows"},
    "server": {"core", "store", "jose", "http", "mail", "trust", "flows", "service"},
    "provider": {"core", "store", "jose", "http", "mail"},
    "agent": {"core", "authmd"},
}
# Module -> its library (CMakeLists.txt); library -> what it may call.
LIBRARY = {
    "core": "core", "store": "core", "jose": "core", "http": "core", "mail": "core",
    "flows": "server", "trust": "server", "service": "server",
    "provider": "provider", "agent": "agent",
}
LINKS = {"core": {"core"}, "server": {"server", "core"},
         "provider": {"provider", "core"}, "agent": {"agent", "core"}}
# The provider's flow layer: no HTTP, not even through a header (papi.h,
# papi.c and main.c are its API layer).
PROVIDER_FLOW = {"provider/pconfig", "provider/pkeys", "provider/pstore",
                 "provider/pflow", "provider/pdiscover", "provider/delivery"}
# File cycles of today still to break (docs/architecture.md).
KNOWN_CYCLES = [
    {"flows/agent", "flows/claim"},
    {"service/authz", "service/resource"},
    {"mail/mailer", "mail/queue"},
]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def cycles(graph):
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    nodes = set(graph) | {w for ws in graph.values() for w in ws}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def unknown_cycles(graph, known):
    """The cycles of graph that are not inside one of the known ones."""
    return [c for c in cycles(graph) if not any(c <= k for k in known)]


def includes():
    """(module, file, included path, is_system) for every source file."""
    for module in sorted(os.listdir(SRC)):
        folder = os.path.join(SRC, module)
        for name in sorted(os.listdir(folder)):
            if name.endswith((".c", ".h")):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    text = f.read()
                for m in INCLUDE.finditer(text):
                    yield module, module + "/" + name, m.group(2), m.group(1) == "<"


def objects():
    """{"module/file": path} of the four libraries' object files."""
    out = {}
    for lib in LINKS:
        top = os.path.join(BIN_DIR, "CMakeFiles", "authmd_%s.dir" % lib, "src")
        for root, _, names in os.walk(top):
            for name in names:
                if name.endswith(".c.o"):
                    module = os.path.relpath(root, top)
                    out[module + "/" + name[:-4]] = os.path.join(root, name)
    return out


def call_graph():
    """(edges {file: {file}}, why {(file, file): [symbol]}) from nm."""
    objs = objects()
    defined, undefined = {}, {}
    for key, path in sorted(objs.items()):
        nm = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
        undefined[key] = set()
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "U":
                undefined[key].add(parts[1])
            elif len(parts) == 3 and parts[1] in "TDRB":
                defined[parts[2]] = key
    edges, why = {}, {}
    for key, syms in undefined.items():
        for s in sorted(syms):
            target = defined.get(s)
            if target is not None and target != key:
                edges.setdefault(key, set()).add(target)
                why.setdefault((key, target), []).append(s)
    return objs, edges, why


class Checker(unittest.TestCase):
    def test_finds_a_cycle(self):
        g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        self.assertEqual(cycles(g), [{"a", "b", "c"}])
        self.assertEqual(unknown_cycles(g, [{"a", "b", "c"}]), [])
        self.assertEqual(unknown_cycles(g, [{"a", "b"}]), [{"a", "b", "c"}])

    def test_no_cycle_in_a_tree(self):
        self.assertEqual(cycles({"a": {"b", "c"}, "b": {"c"}}), [])

    def test_layers_are_one_way(self):
        graph = {m: deps - {"authmd"} for m, deps in LAYERS.items()}
        self.assertEqual(cycles(graph), [])


class Includes(unittest.TestCase):
    def test_modules_include_only_what_they_may(self):
        bad = []
        for module, path, inc, system in includes():
            if system:
                if inc.startswith("microhttpd") and module == "flows":
                    bad.append("%s includes <%s>" % (path, inc))
                if inc.startswith("cjose") and module != "jose":
                    bad.append("%s includes <%s> (only jose/ may)" % (path, inc))
                continue
            target = inc.split("/")[0]
            self.assertIn(module, LAYERS, "src/%s/ is a new module: add it to LAYERS" % module)
            if target != module and target not in LAYERS[module]:
                bad.append("%s includes %s" % (path, inc))
        self.assertEqual(bad, [])

    def test_provider_flow_layer_sees_no_http_through_headers(self):
        seen = {}
        for _, path, inc, system in includes():
            seen.setdefault(path, []).append(("<%s>" if system else "%s") % inc)
        bad = []
        for flow in sorted(PROVIDER_FLOW):
            todo, done = [flow + ".c"], set()
            while todo:
                f = todo.pop()
                for inc in seen.get(f, []):
                    if inc.startswith(("http/", "<microhttpd")):
                        bad.append("%s sees %s (via %s)" % (flow, inc, f))
                    elif not inc.startswith("<") and inc not in done:
                        done.add(inc)
                        todo.append(inc)
        self.assertEqual(bad, [])

    def test_no_include_cycle_between_modules(self):
        graph = {}
        for module, _, inc, system in includes():
            target = inc.split("/")[0]
            if not system and target != module:
                graph.setdefault(module, set()).add(target)
        self.assertEqual(cycles(graph), [])


class Calls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objs, cls.edges, cls.why = call_graph()

    def test_objects_found(self):
        for key in ("core/errors", "flows/claim", "provider/pflow", "agent/client"):
            self.assertIn(key, self.objs)

    def test_calls_go_only_down(self):
        bad = []
        for a, targets in sorted(self.edges.items()):
            for b in sorted(targets):
                la, lb = LIBRARY[a.split("/")[0]], LIBRARY[b.split("/")[0]]
                no_http = a in PROVIDER_FLOW or a.startswith("flows/")
                if lb not in LINKS[la] or (no_http and b.startswith("http/")):
                    bad.append("%s -> %s %s" % (a, b, self.why[(a, b)]))
        self.assertEqual(bad, [])

    def test_no_new_file_cycle(self):
        found = unknown_cycles(self.edges, KNOWN_CYCLES)
        detail = []
        for c in found:
            for a in sorted(c):
                for b in sorted(self.edges.get(a, set()) & c):
                    detail.append("%s -> %s %s" % (a, b, self.why[(a, b)]))
        self.assertEqual(detail, [])

    def test_known_cycles_are_still_there(self):
        # A known cycle that was broken comes out of KNOWN_CYCLES (and the doc).
        found = cycles(self.edges)
        for k in KNOWN_CYCLES:
            self.assertTrue(any(k <= c for c in found), "%s is no cycle now" % sorted(k))


if __name__ == "__main__":
    unittest.main()
