// ttrpc frames in C (ttrpc-frame.h).
#define _GNU_SOURCE
#include "ttrpc-frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_u32(unsigned char *p, uint32_t value) {
  p[0] = (unsigned char)(value >> 24);
  p[1] = (unsigned char)(value >> 16);
  p[2] = (unsigned char)(value >> 8);
  p[3] = (unsigned char)value;
}

void ttrpc_reader_reset(struct ttrpc_reader *reader) {
  free(reader->bytes);
  reader->bytes = NULL;
  reader->have = 0;
}

// Reads into `buffer` up to `want` bytes: 1 when all are there, 0 for more later, -1 when closed.
static int fill(int fd, unsigned char *buffer, size_t *have, size_t want) {
  while (*have < want) {
    ssize_t n = recv(fd, buffer + *have, want - *have, MSG_DONTWAIT);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno == EINTR ? 0 : -1;
    *have += (size_t)n;
  }
  return 1;
}

enum ttrpc_read ttrpc_read(int fd, struct ttrpc_reader *reader, struct ttrpc_frame *out) {
  if (reader->have < TTRPC_HEADER_BYTES) {
    int got = fill(fd, reader->header, &reader->have, TTRPC_HEADER_BYTES);
    if (got <= 0) return got < 0 ? TTRPC_READ_CLOSED : TTRPC_READ_MORE;
    uint32_t length = get_u32(reader->header);
    uint8_t type = reader->header[8];
    if (length > TTRPC_MAX_PAYLOAD || type < TTRPC_REQUEST || type > TTRPC_DATA) return TTRPC_READ_GARBAGE;
    reader->bytes = malloc(TTRPC_HEADER_BYTES + (size_t)length);
    if (!reader->bytes) return TTRPC_READ_CLOSED;
    memcpy(reader->bytes, reader->header, TTRPC_HEADER_BYTES);
  }
  uint32_t length = get_u32(reader->header);
  int got = fill(fd, reader->bytes, &reader->have, TTRPC_HEADER_BYTES + (size_t)length);
  if (got <= 0) return got < 0 ? TTRPC_READ_CLOSED : TTRPC_READ_MORE;
  out->stream = get_u32(reader->header + 4);
  out->type = reader->header[8];
  out->bytes = reader->bytes;
  out->length = length;
  reader->bytes = NULL; // the caller owns it now
  reader->have = 0;
  return TTRPC_READ_FRAME;
}

// A varint at *p (before end): 0, or -1 when it runs past the end or over 64 bits.
static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *value) {
  *value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return -1;
    unsigned char byte = *(*p)++;
    *value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return 0;
  }
  return -1;
}

int ttrpc_request_method(const unsigned char *payload, uint32_t length, const char **service, size_t *service_length, const char **method, size_t *method_length) {
  const unsigned char *p = payload, *end = payload + length;
  *service = *method = "";
  *service_length = *method_length = 0;
  while (p < end) {
    uint64_t key, size;
    if (get_varint(&p, end, &key) < 0) return -1;
    switch (key & 7) {
    case 0: // varint
      if (get_varint(&p, end, &size) < 0) return -1;
      break;
    case 1: // 64-bit
      if (end - p < 8) return -1;
      p += 8;
      break;
    case 2: // length-delimited
      if (get_varint(&p, end, &size) < 0 || size > (uint64_t)(end - p)) return -1;
      if (key >> 3 == 1) *service = (const char *)p, *service_length = (size_t)size;
      if (key >> 3 == 2) *method = (const char *)p, *method_length = (size_t)size;
      p += size;
      break;
    case 5: // 32-bit
      if (end - p < 4) return -1;
      p += 4;
      break;
    default:
      return -1;
    }
  }
  return 0;
}

int ttrpc_write_all(int fd, const unsigned char *bytes, size_t length) {
  while (length > 0) {
    ssize_t n = send(fd, bytes, length, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    bytes += n;
    length -= (size_t)n;
  }
  return 0;
}

size_t ttrpc_put_varint(unsigned char *out, uint64_t value) {
  size_t n = 0;
  do {
    out[n++] = (unsigned char)((value & 0x7f) | (value > 0x7f ? 0x80 : 0));
    value >>= 7;
  } while (value);
  return n;
}

int ttrpc_write_status(int fd, uint32_t stream, int code, const char *message) {
  size_t message_length = strnlen(message, 1024);
  unsigned char status[1040], frame[TTRPC_HEADER_BYTES + 1056];
  size_t s = 0, f = TTRPC_HEADER_BYTES;
  status[s++] = 0x08; // Status.code = 1, varint
  s += ttrpc_put_varint(status + s, (uint64_t)code);
  status[s++] = 0x12; // Status.message = 2, length-delimited
  s += ttrpc_put_varint(status + s, message_length);
  memcpy(status + s, message, message_length);
  s += message_length;
  frame[f++] = 0x0a; // Response.status = 1, length-delimited
  f += ttrpc_put_varint(frame + f, s);
  memcpy(frame + f, status, s);
  f += s;
  put_u32(frame, (uint32_t)(f - TTRPC_HEADER_BYTES));
  put_u32(frame + 4, stream);
  frame[8] = TTRPC_RESPONSE;
  frame[9] = 0;
  return ttrpc_write_all(fd, frame, f);
}

int ttrpc_write_empty(int fd, uint32_t stream) {
  unsigned char frame[TTRPC_HEADER_BYTES] = {0};
  put_u32(frame + 4, stream);
  frame[8] = TTRPC_RESPONSE;
  return ttrpc_write_all(fd, frame, sizeof frame);
}
