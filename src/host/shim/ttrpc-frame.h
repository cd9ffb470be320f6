// ttrpc frames in C, for the per-task relay (task-relay.c): reading them off a socket with the
// payload cap, reading a Request's service and method, and writing a Response that carries only
// a status. The wire format is src/shared/ttrpc/README.md's: a 10-byte big-endian header
// (u32 payload length, u32 stream id, u8 type, u8 flags) and a protobuf payload.
#ifndef MOAT_TTRPC_FRAME_H
#define MOAT_TTRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TTRPC_HEADER_BYTES 10
#define TTRPC_MAX_PAYLOAD (4u << 20)
#define TTRPC_REQUEST 1
#define TTRPC_RESPONSE 2
#define TTRPC_DATA 3
// google.rpc.Code
#define TTRPC_UNAVAILABLE 14

struct ttrpc_frame {
  uint32_t stream;
  uint8_t type;
  // Header and payload as they came, TTRPC_HEADER_BYTES + length bytes: forwarded as they are.
  unsigned char *bytes;
  uint32_t length;
};

// One frame being read off a socket, a few bytes at a time.
struct ttrpc_reader {
  unsigned char header[TTRPC_HEADER_BYTES];
  size_t have;
  unsigned char *bytes;
};

enum ttrpc_read { TTRPC_READ_MORE, TTRPC_READ_FRAME, TTRPC_READ_CLOSED, TTRPC_READ_GARBAGE };

// Reads what `fd` has without blocking. FRAME: `out` holds a whole frame (the caller frees
// out->bytes); MORE: nothing more to read now; CLOSED: end of stream or an error; GARBAGE:
// a payload over the cap or a type that is not request, response or data.
enum ttrpc_read ttrpc_read(int fd, struct ttrpc_reader *reader, struct ttrpc_frame *out);

void ttrpc_reader_reset(struct ttrpc_reader *reader);

// The service and method of a Request payload, pointing into it (not NUL-terminated).
// Returns -1 when the payload is not a protobuf message.
int ttrpc_request_method(const unsigned char *payload, uint32_t length, const char **service, size_t *service_length, const char **method, size_t *method_length);

// Writes a whole buffer; -1 if the peer is gone or did not take it within the send timeout.
int ttrpc_write_all(int fd, const unsigned char *bytes, size_t length);

// Sends Response{status: {code, message}} on `stream`.
int ttrpc_write_status(int fd, uint32_t stream, int code, const char *message);

// Writes a protobuf varint; returns its length (at most 10 bytes).
size_t ttrpc_put_varint(unsigned char *out, uint64_t value);

// Sends an empty (successful) Response on `stream`.
int ttrpc_write_empty(int fd, uint32_t stream);

#endif
