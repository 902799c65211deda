"""The controller's Kubernetes adapter: the only package that imports the `kubernetes` client.

Layers: `client` builds an ApiClient (kubeconfig or host), `resources` is the table of kinds
the controller reads and writes, `api.KubeApi` is the typed adapter (get/list/apply/status/
delete/watch) whose errors are translated once in `errors`, and `store.AppStore` is what the
CLI uses for `mlsysops apps|nodes|clusters` against an API server.
"""
