// The agent's channel to the host: see vport-relay.c.
#pragma once

/** Relays the virtio-serial port `port_name` to the unix socket `agent_socket`; returns only on failure. */
int vport_relay(const char *port_name, const char *agent_socket);
