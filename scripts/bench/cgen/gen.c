/* The benchmark's compiled fan-out load generator: one thread, epoll, non-blocking sockets.
 *
 * Built by scripts/bench/cgen.py with the system cc (-O2) into a cache directory, and driven by
 * the benchmark over stdin/stdout, one command a line, one JSON object a line in answer:
 *   (on start)  connects N members then S senders, handshakes, prints {"ready":true,...}
 *   probe       every sender posts one message          -> {"ok":true}
 *   go          the senders start (the window, the max lag)  -> {"ok":true}
 *   mark        the counters now                         -> {"t":...,"cpu":...,"msgs":...}
 *   prog        the slowest member's message count      -> {"min":...}
 *   stop        close everything and exit                -> {"stopped":true}
 *
 * Semantics are those of the Python generator (clients.py, protocols.py): each sender keeps at
 * most --window messages unanswered, refills when a quarter of it is free, and stays at most
 * --max-lag messages (acknowledged, not yet received by the slowest member) ahead. Deliveries
 * are counted without decoding anything:
 *   chat     4-byte length prefix, payload byte 9 ('m'essage, 'a'ck, 'w'elcome, 'p'ing...);
 *            each say has a unique id ("id":"0000000001"...), as a client that can re-send
 *            does (--say-id 0: none, as the Python generator)
 *   redis    RESP pub/sub: SUBSCRIBE; PUBLISH, one integer reply each; the fixed message prefix
 *   nats     SUB; PUB... PING per batch, the PONGs are the window; "MSG bench " counted
 *   xstream  Redis Streams: XADD (one bulk id reply each); members XREAD BLOCK 0 from the
 *            last id they saw (a small streaming RESP walker, ids kept, entries counted)
 *   js       NATS JetStream: PUB with a reply inbox, the PubAcks are the window; members each
 *            own an ephemeral push consumer (deliver all, ack none); "MSG " counted
 *   text     the textbook servers: 10-byte ASCII length headers, two frames per delivery,
 *            no replies (the socket's own flow control is the window)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum proto { P_CHAT, P_REDIS, P_NATS, P_XSTREAM, P_JS, P_TEXT };
enum state { S_WAIT, S_CONNECTING, S_HANDSHAKE, S_READY, S_CLOSED, S_FAILED };

#define CARRY 256
#define RBUF (256 * 1024)
#define MAXDEPTH 8
#define HIGH_WATER (64 * 1024)

struct lvl { long rem, pos; };

struct conn {
    int fd, idx, attempts;
    char role; /* 'm' member, 's' sender */
    enum state st;
    char name[24];
    double retry_at;
    /* receiving */
    uint8_t carry[CARRY];
    size_t carry_len;
    uint64_t skip; /* chat/text: payload bytes still to skip */
    char *pre;     /* the handshake's bytes, until its marker */
    size_t pre_len, pre_cap;
    uint64_t msgs, acks, sent, rx, frames;
    long outstanding;
    /* sending */
    uint8_t *obuf;
    size_t olen, ooff, ocap;
    int out_armed;
    double blocked_since;
    const uint8_t *m; /* a sender's message (jetstream: its own reply inbox in it) */
    size_t mlen;
    uint64_t next_id; /* chat with --say-id: the next say's id */
    /* nats: the batch sizes whose PONG is awaited */
    int *pings;
    size_t ph, pt, pcap;
    /* xstream members: the RESP walk */
    struct lvl stk[MAXDEPTH];
    int sp;
    uint64_t bulk_rem;
    int capture;
    char id[48], cur[48];
    size_t cur_len;
};

static enum proto proto;
static const char *host = "127.0.0.1";
static int port, nmembers, nsenders, window = 200, refill = 50, text_size = 100;
static long max_lag = 50000;
static int concurrency = 64;
static int say_id = 1;   /* chat: each say carries a unique id, as a real client's */
static size_t id_off;    /* where its 10 digits are in the message */
static double timeout_s = 60;
static struct conn *conns;
static int nconns, ep;
static int going;
static uint64_t sent_total, acked_total, lost, lost_during;
static uint64_t min_member;
static double lag_blocked, last_min;
static uint8_t *msg;
static size_t msg_len;
static uint8_t rb[CARRY + RBUF];
/* error counters, reported by name */
enum { E_MEMBER_LOST, E_SENDER_LOST, E_ERROR_FRAME, E_BYE_FRAME, E_ERROR_REPLY, E_PUBACK_ERROR,
       E_COUNT };
static const char *ename[E_COUNT] = {
    "member connection lost", "sender connection lost", "error frame", "bye frame",
    "error reply", "jetstream puback error"};
static uint64_t errs[E_COUNT];
static char why[512];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) die("out of memory");
    return p;
}

/* ---- output */

static void out_reserve(struct conn *c, size_t n) {
    if (c->ooff && c->ooff == c->olen) c->ooff = c->olen = 0;
    if (c->olen + n > c->ocap) {
        if (c->ooff) { /* compact first */
            memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
            c->olen -= c->ooff;
            c->ooff = 0;
        }
        if (c->olen + n > c->ocap) {
            c->ocap = (c->olen + n) * 2;
            c->obuf = xrealloc(c->obuf, c->ocap);
        }
    }
}

static void out_add(struct conn *c, const void *p, size_t n) {
    out_reserve(c, n);
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
}

static void out_fmt(struct conn *c, const char *fmt, ...) {
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) out_add(c, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void arm(struct conn *c, int out) {
    if (c->out_armed == out || c->fd < 0) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = c->idx};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->out_armed = out;
}

static void lose(struct conn *c, const char *what);

/* Write what is pending; arm EPOLLOUT while some is left. */
static void flush(struct conn *c) {
    while (c->ooff < c->olen) {
        ssize_t k = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
        if (k > 0) {
            c->ooff += k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm(c, 1);
            return;
        }
        lose(c, strerror(errno));
        return;
    }
    c->ooff = c->olen = 0;
    if (proto != P_TEXT || c->role != 's' || !going) arm(c, 0);
}

/* ---- the senders */

static void pump(struct conn *c);

static void add_msgs(struct conn *c, int k) {
    out_reserve(c, c->mlen * k + 8);
    for (int i = 0; i < k; i++) {
        uint8_t *p = c->obuf + c->olen;
        memcpy(p, c->m, c->mlen);
        if (id_off) {
            uint64_t v = ++c->next_id;
            for (int d = 9; d >= 0; d--, v /= 10) p[id_off + d] = '0' + v % 10;
        }
        c->olen += c->mlen;
    }
    if (proto == P_NATS) {
        out_add(c, "PING\r\n", 6);
        if (c->pt - c->ph == c->pcap) { /* grow the ring (kept linear: compact) */
            size_t n = c->pt - c->ph;
            int *p = malloc(sizeof(int) * (c->pcap ? c->pcap * 2 : 64));
            if (!p) die("out of memory");
            for (size_t i = 0; i < n; i++) p[i] = c->pings[(c->ph + i) % c->pcap];
            free(c->pings);
            c->pings = p;
            c->pcap = c->pcap ? c->pcap * 2 : 64;
            c->ph = 0;
            c->pt = n;
        }
        c->pings[c->pt % c->pcap] = k;
        c->pt++;
    }
    if (proto != P_TEXT) c->outstanding += k;
    c->sent += k;
    sent_total += k;
}

static void pump(struct conn *c) {
    if (!going || c->st != S_READY || c->role != 's') return;
    if (c->olen - c->ooff > HIGH_WATER) return; /* the socket is full: EPOLLOUT resumes us */
    if (proto == P_TEXT) {
        add_msgs(c, window);
        flush(c);
        if (c->fd >= 0) arm(c, 1); /* more when the socket takes it */
        return;
    }
    long room = window - c->outstanding;
    if (room < refill) return;
    long lag = (long)(acked_total - (min_member > acked_total ? acked_total : min_member));
    if (min_member == UINT64_MAX) lag = 0;
    long lag_room = max_lag - lag;
    double t = now();
    if (lag_room <= 0) {
        if (c->blocked_since < 0) c->blocked_since = t;
        return;
    }
    if (c->blocked_since >= 0) {
        lag_blocked += t - c->blocked_since;
        c->blocked_since = -1;
    }
    add_msgs(c, (int)(room < lag_room ? room : lag_room));
    flush(c);
}

static void acked(struct conn *c, uint64_t n) {
    c->acks += n;
    c->outstanding -= n;
    acked_total += n;
    if (c->outstanding <= window - refill) pump(c);
}

/* ---- connections */

static void ready(struct conn *c) {
    if (c->st == S_HANDSHAKE) c->st = S_READY;
    free(c->pre);
    c->pre = NULL;
    c->pre_len = c->pre_cap = 0;
}

static void fail(struct conn *c, const char *what) {
    if (!why[0]) snprintf(why, sizeof why, "%s %s: %s", c->role == 'm' ? "member" : "sender",
                          c->name, what);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->st = S_FAILED;
}

static void lose(struct conn *c, const char *what) {
    if (c->st == S_CLOSED || c->st == S_FAILED) return;
    if (c->st != S_READY) {
        fail(c, what);
        return;
    }
    close(c->fd);
    c->fd = -1;
    c->st = S_CLOSED;
    lost++;
    if (going) {
        lost_during++;
        errs[c->role == 'm' ? E_MEMBER_LOST : E_SENDER_LOST]++;
    }
}

static void on_connect(struct conn *c) {
    int sub = c->role == 'm';
    switch (proto) {
    case P_CHAT: {
        char hello[128];
        int n = snprintf(hello, sizeof hello, "{\"type\":\"hello\",\"name\":\"%s\",\"version\":1}",
                         c->name);
        uint32_t be = htonl(n);
        out_add(c, &be, 4);
        out_add(c, hello, n);
        break;
    }
    case P_REDIS:
        if (sub) out_fmt(c, "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n");
        else out_fmt(c, "*1\r\n$4\r\nPING\r\n");
        break;
    case P_XSTREAM:
        out_fmt(c, "*1\r\n$4\r\nPING\r\n");
        if (sub) {
            strcpy(c->id, "0-0");
            out_fmt(c, "*8\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$5\r\nCOUNT\r\n$5\r\n10000"
                       "\r\n$7\r\nSTREAMS\r\n$5\r\nbench\r\n$3\r\n0-0\r\n");
        }
        break;
    case P_NATS:
        out_fmt(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"%s\"}\r\n", c->name);
        if (sub) out_fmt(c, "SUB bench 1\r\n");
        out_fmt(c, "PING\r\n");
        break;
    case P_JS:
        out_fmt(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"%s\"}\r\n", c->name);
        out_fmt(c, "SUB _INBOX.%s 2\r\n", c->name);
        if (sub) {
            char cfg[512];
            int n = snprintf(cfg, sizeof cfg,
                             "{\"stream_name\":\"BENCH\",\"config\":{\"deliver_subject\":\"d.%s\","
                             "\"deliver_policy\":\"all\",\"ack_policy\":\"none\","
                             "\"replay_policy\":\"instant\",\"mem_storage\":true}}",
                             c->name);
            out_fmt(c, "SUB d.%s 1\r\nPUB $JS.API.CONSUMER.CREATE.BENCH _INBOX.%s %d\r\n%s\r\n",
                    c->name, c->name, n, cfg);
        } else {
            out_fmt(c, "PING\r\n");
        }
        break;
    case P_TEXT: {
        char h[24];
        snprintf(h, sizeof h, "%-10zu", strlen(c->name));
        out_add(c, h, 10);
        out_add(c, c->name, strlen(c->name));
        c->st = S_READY; /* the textbook servers answer nothing */
        break;
    }
    }
    flush(c);
}

static void start_connect(struct conn *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->attempts++;
    c->st = S_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = c->idx};
    c->out_armed = 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        c->fd = -1;
        if (c->attempts < 4) {
            c->st = S_WAIT;
            c->retry_at = now() + 0.05 * c->attempts;
        } else {
            fail(c, strerror(e));
        }
    }
}

static void connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        if (c->attempts < 4) {
            c->st = S_WAIT;
            c->retry_at = now() + 0.05 * c->attempts;
        } else {
            fail(c, strerror(err));
        }
        return;
    }
    c->st = S_HANDSHAKE;
    arm(c, 0);
    on_connect(c);
}

/* ---- counting */

static uint64_t count_pat(const uint8_t *b, size_t end, const char *pat, size_t plen) {
    uint64_t n = 0;
    const uint8_t *p = b, *e = b + end;
    while ((size_t)(e - p) >= plen) {
        p = memchr(p, pat[0], (e - p) - plen + 1);
        if (!p) break;
        if (!memcmp(p, pat, plen)) {
            n++;
            p += plen;
        } else {
            p++;
        }
    }
    return n;
}

static void keep_tail(struct conn *c, const uint8_t *b, size_t end, size_t keep) {
    if (keep > end) keep = end;
    memmove(c->carry, b + end - keep, keep);
    c->carry_len = keep;
}

static void chat_control(struct conn *c, uint8_t t, const uint8_t *p, size_t avail) {
    if (c->st == S_HANDSHAKE && avail >= 9 && memcmp(p, "{\"type\":\"", 9)) {
        fail(c, "server frames do not start with {\"type\": the bench must be updated");
        return;
    }
    if (t == 'w') {
        ready(c);
    } else if (t == 'p') {
        static const uint8_t pong[] = "\0\0\0\x0f{\"type\":\"pong\"}";
        out_add(c, pong, 19);
        flush(c);
    } else if (t == 'e' || t == 'b') {
        errs[t == 'b' ? E_BYE_FRAME : E_ERROR_FRAME]++;
        if (c->st == S_HANDSHAKE) {
            char w[200];
            size_t n = avail < 150 ? avail : 150;
            snprintf(w, sizeof w, "refused: %.*s", (int)n, (const char *)p);
            fail(c, w);
        }
    }
}

static void count_chat(struct conn *c, const uint8_t *b, size_t end) {
    size_t i = 0;
    c->carry_len = 0;
    if (c->skip) {
        if (c->skip >= end) {
            c->skip -= end;
            return;
        }
        i = c->skip;
        c->skip = 0;
    }
    uint64_t msgs = 0, acks = 0;
    while (i + 14 <= end) {
        uint32_t n = (uint32_t)b[i] << 24 | (uint32_t)b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3];
        uint8_t t = b[i + 13];
        if (t == 'm') msgs++;
        else if (t == 'a') acks++;
        else {
            chat_control(c, t, b + i + 4, end - i - 4);
            if (c->st == S_FAILED) return;
        }
        i += 4 + (size_t)n;
    }
    c->msgs += msgs;
    if (acks) acked(c, acks);
    if (i < end) keep_tail(c, b + i, end - i, end - i);
    else c->skip = i - end;
}

static void count_text(struct conn *c, const uint8_t *b, size_t end) {
    size_t i = 0;
    c->carry_len = 0;
    if (c->skip) {
        if (c->skip >= end) {
            c->skip -= end;
            return;
        }
        i = c->skip;
        c->skip = 0;
    }
    uint64_t frames = 0;
    while (i + 10 <= end) {
        size_t n = 0;
        for (int k = 0; k < 10 && b[i + k] >= '0' && b[i + k] <= '9'; k++) n = n * 10 + b[i + k] - '0';
        i += 10 + n;
        frames++;
    }
    c->frames += frames;
    c->msgs = c->frames >> 1;
    if (i < end) keep_tail(c, b + i, end - i, end - i);
    else c->skip = i - end;
}

static void xread_next(struct conn *c) {
    size_t n = strlen(c->id);
    out_fmt(c, "*8\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$5\r\nCOUNT\r\n$5\r\n10000\r\n"
               "$7\r\nSTREAMS\r\n$5\r\nbench\r\n$%zu\r\n%s\r\n", n, c->id);
    flush(c);
}

static void x_done(struct conn *c) {
    for (;;) {
        if (c->sp == 0) {
            xread_next(c); /* a whole reply: ask for what follows its last id */
            return;
        }
        struct lvl *t = &c->stk[c->sp - 1];
        t->pos++;
        if (--t->rem > 0) return;
        c->sp--;
    }
}

/* An XREAD reply: [[stream, [[id, [field, value]], ...]]]; ids are the bulk strings at depth
 * four in first position, one per entry. */
static void count_xread(struct conn *c, const uint8_t *b, size_t end) {
    size_t i = 0;
    c->carry_len = 0;
    while (i < end) {
        if (c->bulk_rem) {
            size_t k = end - i < c->bulk_rem ? end - i : c->bulk_rem;
            if (c->capture) {
                for (size_t j = 0; j < k; j++) {
                    if (c->cur_len < sizeof c->cur - 1 && b[i + j] != '\r' && b[i + j] != '\n')
                        c->cur[c->cur_len++] = b[i + j];
                }
            }
            i += k;
            c->bulk_rem -= k;
            if (!c->bulk_rem) {
                if (c->capture) {
                    c->cur[c->cur_len] = 0;
                    memcpy(c->id, c->cur, c->cur_len + 1);
                    c->msgs++;
                    c->capture = 0;
                }
                x_done(c);
            }
            continue;
        }
        const uint8_t *nl = memchr(b + i, '\n', end - i);
        if (!nl) {
            keep_tail(c, b + i, end - i, end - i < CARRY ? end - i : CARRY);
            return;
        }
        long v = strtol((const char *)b + i + 1, NULL, 10);
        switch (b[i]) {
        case '*':
            if (v > 0 && c->sp < MAXDEPTH) {
                c->stk[c->sp].rem = v;
                c->stk[c->sp].pos = 0;
                c->sp++;
            } else {
                x_done(c);
            }
            break;
        case '$':
            if (v < 0) {
                x_done(c);
            } else {
                c->bulk_rem = (uint64_t)v + 2;
                c->capture = c->sp == 4 && c->stk[3].pos == 0;
                c->cur_len = 0;
            }
            break;
        case '-':
            errs[E_ERROR_REPLY]++;
            x_done(c);
            break;
        default:
            x_done(c);
        }
        i = nl - b + 1;
    }
}

static void nats_common(struct conn *c, const uint8_t *b, size_t end) {
    if (count_pat(b, end, "PING\r\n", 6)) {
        out_add(c, "PONG\r\n", 6);
        flush(c);
    }
    if (count_pat(b, end, "-ERR", 4)) errs[E_ERROR_REPLY]++;
}

static void count_data(struct conn *c, const uint8_t *b, size_t end) {
    switch (proto) {
    case P_CHAT:
        count_chat(c, b, end);
        return;
    case P_TEXT:
        count_text(c, b, end);
        return;
    case P_REDIS:
        if (c->role == 's') {
            uint64_t n = count_pat(b, end, "\n", 1);
            if (memchr(b, '-', end)) errs[E_ERROR_REPLY]++;
            c->carry_len = 0;
            if (n) acked(c, n);
        } else {
            static const char pat[] = "*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n";
            c->msgs += count_pat(b, end, pat, sizeof pat - 1);
            keep_tail(c, b, end, sizeof pat - 2);
        }
        return;
    case P_XSTREAM:
        if (c->role == 's') {
            uint64_t n = count_pat(b, end, "$", 1);
            if (count_pat(b, end, "\n-", 2) || (end && b[0] == '-')) errs[E_ERROR_REPLY]++;
            c->carry_len = 0;
            if (n) acked(c, n);
        } else {
            count_xread(c, b, end);
        }
        return;
    case P_NATS:
        nats_common(c, b, end);
        if (c->role == 's') {
            uint64_t pongs = count_pat(b, end, "PONG\r\n", 6);
            uint64_t n = 0;
            for (; pongs && c->ph < c->pt; pongs--, c->ph++) n += c->pings[c->ph % c->pcap];
            keep_tail(c, b, end, 5);
            if (n) acked(c, n);
        } else {
            c->msgs += count_pat(b, end, "MSG bench ", 10);
            keep_tail(c, b, end, 9);
        }
        return;
    case P_JS: {
        nats_common(c, b, end);
        uint64_t n = count_pat(b, end, "MSG ", 4);
        if (c->role == 's') {
            if (count_pat(b, end, "\"error\"", 7)) errs[E_PUBACK_ERROR]++;
            keep_tail(c, b, end, 6);
            if (n) acked(c, n);
        } else {
            c->msgs += n;
            keep_tail(c, b, end, 3);
        }
        return;
    }
    }
}

/* The handshake of the protocols that need one answer before counting: the bytes so far in
 * c->pre; returns the offset where counting starts, or -1 (not yet, or failed). */
static long handshake(struct conn *c) {
    const char *p = c->pre;
    size_t n = c->pre_len;
    const char *m = NULL;
    size_t mlen = 0;
    if (proto == P_REDIS || proto == P_XSTREAM) {
        if (proto == P_REDIS && c->role == 'm') {
            m = memmem(p, n, "bench\r\n:1\r\n", 11);
            mlen = 11;
        } else {
            m = memmem(p, n, "+PONG\r\n", 7);
            mlen = 7;
        }
        if (!m && n && p[0] == '-') {
            char w[200];
            snprintf(w, sizeof w, "%.*s", (int)(n < 150 ? n : 150), p);
            fail(c, w);
        }
    } else if (proto == P_NATS || (proto == P_JS && c->role == 's')) {
        m = memmem(p, n, "PONG\r\n", 6);
        mlen = 6;
        const char *e = memmem(p, n, "-ERR", 4);
        if (!m && e) {
            char w[200];
            snprintf(w, sizeof w, "%.*s", (int)(n - (e - p) < 150 ? n - (e - p) : 150), e);
            fail(c, w);
        }
    } else if (proto == P_JS) { /* the consumer's create response: MSG _INBOX.name 2 len */
        char head[64];
        int hl = snprintf(head, sizeof head, "MSG _INBOX.%s 2 ", c->name);
        const char *h = memmem(p, n, head, hl);
        if (!h) return -1;
        const char *eol = memmem(h, n - (h - p), "\r\n", 2);
        if (!eol) return -1;
        long len = strtol(h + hl, NULL, 10);
        size_t body = eol + 2 - p;
        if (n < body + len + 2) return -1;
        if (memmem(p + body, len, "\"error\"", 7)) {
            char w[300];
            snprintf(w, sizeof w, "consumer create: %.*s", (int)(len < 250 ? len : 250), p + body);
            fail(c, w);
            return -1;
        }
        m = p + body + len;
        mlen = 2;
    }
    if (!m) return -1;
    return m - p + mlen;
}

static void on_readable(struct conn *c) {
    memcpy(rb, c->carry, c->carry_len);
    ssize_t k = read(c->fd, rb + c->carry_len, RBUF);
    if (k < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        lose(c, strerror(errno));
        return;
    }
    if (k == 0) {
        lose(c, "connection closed by the server");
        return;
    }
    c->rx += k;
    size_t end = c->carry_len + k;
    int pre = c->st == S_HANDSHAKE && proto != P_CHAT && proto != P_TEXT;
    if (!pre) {
        count_data(c, rb, end);
        return;
    }
    if (c->pre_len + end > c->pre_cap) {
        c->pre_cap = (c->pre_len + end) * 2;
        c->pre = xrealloc(c->pre, c->pre_cap);
    }
    memcpy(c->pre + c->pre_len, rb, end);
    c->pre_len += end;
    c->carry_len = 0;
    long at = handshake(c);
    if (at < 0) return;
    size_t rest = c->pre_len - at;
    memcpy(rb, c->pre + at, rest);
    ready(c);
    count_data(c, rb, rest);
}

/* ---- the parent's commands */

static void min_members(void) {
    uint64_t m = UINT64_MAX;
    for (int i = 0; i < nmembers; i++)
        if (conns[i].st == S_READY && conns[i].msgs < m) m = conns[i].msgs;
    min_member = m;
    last_min = now();
}

static void mark(void) {
    uint64_t msgs = 0, mmsgs = 0, acks = 0, rx = 0, live = 0;
    double blocked = lag_blocked, t = now();
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        msgs += c->msgs;
        if (c->role == 'm') mmsgs += c->msgs;
        acks += c->acks;
        rx += c->rx;
        live += c->st == S_READY;
        if (c->blocked_since >= 0) blocked += t - c->blocked_since;
    }
    printf("{\"t\":%.6f,\"cpu\":%.6f,\"msgs\":%llu,\"member_msgs\":%llu,\"sent\":%llu,"
           "\"acks\":%llu,\"lost\":%llu,\"lost_during\":%llu,\"lag_blocked\":%.6f,\"live\":%llu,"
           "\"rx\":%llu,\"errors\":{",
           t, cpu(), (unsigned long long)msgs, (unsigned long long)mmsgs,
           (unsigned long long)sent_total, (unsigned long long)acks, (unsigned long long)lost,
           (unsigned long long)lost_during, blocked, (unsigned long long)live,
           (unsigned long long)rx);
    const char *sep = "";
    for (int e = 0; e < E_COUNT; e++) {
        if (errs[e]) {
            printf("%s\"%s\":%llu", sep, ename[e], (unsigned long long)errs[e]);
            sep = ",";
        }
    }
    printf("}}\n");
    fflush(stdout);
}

static int command(const char *line) {
    if (!strcmp(line, "probe")) {
        for (int i = nmembers; i < nconns; i++) {
            struct conn *c = &conns[i];
            if (c->st != S_READY) continue;
            add_msgs(c, 1);
            flush(c);
        }
        printf("{\"ok\":true}\n");
    } else if (!strcmp(line, "go")) {
        going = 1;
        min_members();
        for (int i = nmembers; i < nconns; i++) pump(&conns[i]);
        printf("{\"ok\":true}\n");
    } else if (!strcmp(line, "mark")) {
        mark();
    } else if (!strcmp(line, "prog")) {
        min_members();
        printf("{\"min\":%llu}\n", (unsigned long long)(min_member == UINT64_MAX ? 0 : min_member));
    } else if (!strcmp(line, "stop")) {
        return 1;
    } else {
        printf("{\"error\":\"unknown command %s\"}\n", line);
    }
    fflush(stdout);
    return 0;
}

static char cmdbuf[4096];
static size_t cmdlen;

/* Reads stdin; returns 1 to stop (a stop command, or the parent gone). */
static int on_stdin(void) {
    ssize_t k = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (k <= 0) return !(k < 0 && (errno == EAGAIN || errno == EINTR));
    cmdlen += k;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen))) {
        *nl = 0;
        if (command(cmdbuf)) return 1;
        size_t used = nl + 1 - cmdbuf;
        memmove(cmdbuf, nl + 1, cmdlen - used);
        cmdlen -= used;
    }
    if (cmdlen == sizeof cmdbuf - 1) cmdlen = 0;
    return 0;
}

/* ---- set-up and the loop */

static void usage(void) {
    die("usage: gen --proto chat|redis|nats|xstream|js|text --port P --members N --senders S "
        "[--host H] [--window W] [--max-lag L] [--text-size B] [--concurrency C] [--timeout T] "
        "[--say-id 0|1]");
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--proto")) {
            if (!strcmp(v, "chat")) proto = P_CHAT;
            else if (!strcmp(v, "redis")) proto = P_REDIS;
            else if (!strcmp(v, "nats")) proto = P_NATS;
            else if (!strcmp(v, "xstream")) proto = P_XSTREAM;
            else if (!strcmp(v, "js")) proto = P_JS;
            else if (!strcmp(v, "text")) proto = P_TEXT;
            else usage();
        } else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--members")) nmembers = atoi(v);
        else if (!strcmp(k, "--senders")) nsenders = atoi(v);
        else if (!strcmp(k, "--window")) window = atoi(v);
        else if (!strcmp(k, "--max-lag")) max_lag = atol(v);
        else if (!strcmp(k, "--text-size")) text_size = atoi(v);
        else if (!strcmp(k, "--concurrency")) concurrency = atoi(v);
        else if (!strcmp(k, "--timeout")) timeout_s = atof(v);
        else if (!strcmp(k, "--say-id")) say_id = atoi(v);
        else usage();
    }
    if (!port || nmembers < 0 || nsenders < 1 || window < 1 || text_size < 1) usage();
    refill = window / 4 > 1 ? window / 4 : 1;

    /* the text: as clients.make_text, and each protocol's message around it */
    static const char lorem[] =
        "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua Ut enim ad minim veniam quis nostrud ";
    char *text = malloc(text_size + 1);
    for (int i = 0; i < text_size; i++) text[i] = lorem[i % (sizeof lorem - 1)];
    text[text_size] = 0;
    msg = malloc(text_size + 256);
    switch (proto) {
    case P_CHAT: {
        int n = sprintf((char *)msg + 4, "{\"type\":\"say\",\"room\":\"lobby\",\"text\":\"%s\"%s}",
                        text, say_id ? ",\"id\":\"0000000000\"" : "");
        if (say_id) id_off = 4 + n - 12;
        uint32_t be = htonl(n);
        memcpy(msg, &be, 4);
        msg_len = n + 4;
        break;
    }
    case P_REDIS:
        msg_len = sprintf((char *)msg, "*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$%d\r\n%s\r\n",
                          text_size, text);
        break;
    case P_XSTREAM:
        msg_len = sprintf((char *)msg, "*5\r\n$4\r\nXADD\r\n$5\r\nbench\r\n$1\r\n*\r\n$1\r\nt\r\n"
                                       "$%d\r\n%s\r\n", text_size, text);
        break;
    case P_NATS:
        msg_len = sprintf((char *)msg, "PUB bench %d\r\n%s\r\n", text_size, text);
        break;
    case P_JS:
        break; /* per sender: its reply inbox is in the PUB (built with the connections) */
    case P_TEXT:
        msg_len = sprintf((char *)msg, "%-10d%s", text_size, text);
        break;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    nconns = nmembers + nsenders;
    conns = calloc(nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->idx = i;
        c->fd = -1;
        c->blocked_since = -1;
        c->role = i < nmembers ? 'm' : 's';
        if (proto == P_TEXT)
            snprintf(c->name, sizeof c->name, "%c%06d", c->role, i < nmembers ? i : i - nmembers);
        else
            snprintf(c->name, sizeof c->name, "%c%d", c->role, i < nmembers ? i : i - nmembers);
        c->m = msg;
        c->mlen = msg_len;
        if (proto == P_JS && c->role == 's') {
            uint8_t *m = malloc(text_size + 128);
            c->mlen = sprintf((char *)m, "PUB bench _INBOX.%s %d\r\n%s\r\n", c->name, text_size,
                              text);
            c->m = m;
        }
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);

    struct epoll_event evs[512];
    double t0 = now(), deadline = t0 + timeout_s;
    int phase = 0; /* 0 connecting members, 1 connecting senders, 2 running */
    for (;;) {
        double t = now();
        if (phase < 2) {
            int lo = phase == 0 ? 0 : nmembers, hi = phase == 0 ? nmembers : nconns;
            int inflight = 0, done = 0, failed = 0;
            for (int i = lo; i < hi; i++) {
                enum state s = conns[i].st;
                inflight += s == S_CONNECTING || s == S_HANDSHAKE;
                done += s == S_READY;
                failed += s == S_FAILED || s == S_CLOSED;
            }
            for (int i = lo; i < hi && inflight < concurrency; i++) {
                struct conn *c = &conns[i];
                if (c->st == S_WAIT && (c->attempts == 0 || c->retry_at <= t)) {
                    start_connect(c);
                    inflight += c->st == S_CONNECTING;
                }
            }
            if (done + failed == hi - lo || t > deadline) {
                if (phase == 0 && !failed && t <= deadline) {
                    phase = 1;
                    continue;
                }
                int ok = 0, bad = 0;
                for (int i = 0; i < nconns; i++) {
                    ok += conns[i].st == S_READY;
                    bad += conns[i].st != S_READY;
                }
                if (bad && !why[0]) snprintf(why, sizeof why, "not ready after %.0f s", timeout_s);
                printf("{\"ready\":true,\"ok\":%d,\"failed\":%d,\"why\":", ok, bad);
                if (bad) {
                    putchar('"');
                    for (const char *q = why; *q; q++) {
                        if (*q == '"' || *q == '\\') putchar('\\');
                        putchar((unsigned char)*q < 32 ? ' ' : *q);
                    }
                    putchar('"');
                } else {
                    printf("null");
                }
                printf(",\"connect_s\":%.3f,\"loop\":\"c-epoll\"}\n", now() - t0);
                fflush(stdout);
                phase = 2;
            }
        }
        int timeout = phase < 2 ? 5 : (going ? 1 : 50);
        int n = epoll_wait(ep, evs, 512, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int j = 0; j < n; j++) {
            uint32_t id = evs[j].data.u32;
            if (id == UINT32_MAX) {
                if (on_stdin()) goto stop;
                continue;
            }
            struct conn *c = &conns[id];
            if (c->fd < 0) continue;
            if (c->st == S_CONNECTING) {
                if (evs[j].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(c);
                continue;
            }
            if (evs[j].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
            if (c->fd >= 0 && (evs[j].events & EPOLLOUT)) {
                flush(c);
                if (c->fd >= 0 && c->ooff == c->olen) pump(c);
            }
        }
        if (going) {
            double t2 = now();
            if (t2 - last_min >= 0.001) {
                min_members();
                for (int i = nmembers; i < nconns; i++)
                    if (conns[i].blocked_since >= 0) pump(&conns[i]);
            }
        }
    }
stop:
    going = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    printf("{\"stopped\":true}\n");
    fflush(stdout);
    return 0;
}
