"""SSH to every host of an environment: one shared asyncssh connection per host, errors as data.

`SshPool` holds exactly one connection per host for the whole session, opened lazily and reused
for commands, SFTP and local port forwards; hosts with `jump = true` are reached through the
bastion's own single connection. Host keys are always verified against `ssh.known_hosts`.

Why it is shaped like this (measured against OpenSSH 9.2 with asyncssh 2.24):

- sshd allows 10 session channels per connection (`MaxSessions`) and drops handshakes beyond
  10 in flight (`MaxStartups`): every session channel holds a permit of a per-connection
  `Semaphore(max_channels)` for its lifetime, and connection set-up is paced by a pool-wide
  `Semaphore(max_connects_in_flight)`. `direct-tcpip` channels (forwards, and the bastion's
  tunnels to jump hosts) are not counted by `MaxSessions` and may live for the whole session,
  so they hold a permit only while they open.
- One SFTP session per connection is kept open (opening one costs a round trip and more under
  load; a `stat` on a held one costs ~2 ms). It holds one channel permit while it lives.
- sshd sets TCP_NODELAY on its side of a connection only once a session runs on it
  (`ssh_packet_set_interactive` from `do_exec`). A connection used only for forwards, like the
  bastion's, keeps Nagle on at sshd, and a TLS handshake through a forward then waits for
  delayed ACKs (50-80 ms instead of ~10 ms here). So the pool "primes" such connections by
  opening a session (an SFTP subsystem, no shell start-up) before forwarding over them. Our own
  sockets already have TCP_NODELAY: asyncssh sets it on the SSH socket, and it is set on the
  forward's listening and accepted sockets here.
- Forwards are our own listeners on 127.0.0.1:0 that open a channel on the host's *current*
  connection per accepted socket, so a forward's local port stays valid across reconnects.

Nothing public raises for network or server trouble: commands return `CommandResult` with
`error`, file calls return `SshError` values. A dropped connection is noticed on next use and
re-established; failed attempts back off exponentially (0.2 s doubling to 5 s), and calls made
during a back-off fail fast with the last error.

The package: `probes.ssh.pool.SshPool` (the connections, commands, files and forwards),
`probes.ssh.results` (what calls return), `probes.ssh.reach.check_reachable` (the ssh.reachable check),
`probes.ssh.readonly` (the read-only capability the collector is typed against), and behind them
`probes.ssh.links` (per-host state and socket plumbing), `probes.ssh.options` (one asyncssh options
object per host) and `probes.ssh.diagnose` (what a failure means, in words that say what to do).
"""
