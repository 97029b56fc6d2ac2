package socket

// Where treaty's sockets are unless configured otherwise: the server
// listens there (config's admin_socket and workload_socket) and the CLI
// looks there (-socketPath). The admin socket's directory is private to the
// server's user; the Workload API's is public, since any workload calls it.
const (
	DefaultAdminPath    = "/tmp/treaty/private/admin.sock"
	DefaultWorkloadPath = "/tmp/treaty/public/workload.sock"
)
