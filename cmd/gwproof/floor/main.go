// Command floor is the cost part's reference client: the least a client
// can spend on this machine to do what gatewayd does once a sampling round,
// and nothing else. It signs in to the platform emulator as a device, then
// every interval, on the interval's grid, publishes one prebuilt Alink
// property post of the same size and shape as gatewayd's (QoS 0, nine
// properties) and reads the reply: two wake-ups per round (the timer, the
// reply), no sensors, no buffer, no JSON; it allocates only what the socket
// I/O does.
//
// It is a measuring stick, not a product: the harness runs it beside
// gatewayd and the seed's Node client, so the report can say how much of a
// round's CPU is the machine's price of waking twice and how much is
// gatewayd's own work.
//
// Usage: floor ADDR PRODUCT_KEY DEVICE_NAME DEVICE_SECRET INTERVAL
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"gatewayd/internal/mqttwire"
	"gatewayd/internal/rawio"
	"gatewayd/internal/tick"
	"gatewayd/uplink"
)

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: floor ADDR PRODUCT_KEY DEVICE_NAME DEVICE_SECRET INTERVAL")
		os.Exit(2)
	}
	iv, err := time.ParseDuration(os.Args[5])
	if err == nil && iv <= 0 {
		err = fmt.Errorf("interval %v: must be positive", iv)
	}
	if err == nil {
		err = run(os.Args[1], os.Args[2], os.Args[3], os.Args[4], iv, 0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// The same runtime settings gatewayd's `run` takes (cmd/gatewayd/main.go).
func init() {
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(40)
}

// run signs in and posts every iv, for rounds rounds (0: until killed).
func run(addr, pk, dn, secret string, iv time.Duration, rounds int) error {
	cr, err := uplink.Options{Platform: uplink.PlatformAliyun, Endpoint: addr, ProductKey: pk, DeviceName: dn, DeviceSecret: secret}.Credentials()
	if err != nil {
		return err
	}
	d, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := rawio.Wrap(d) // gatewayd's own reads and writes (uplink)
	defer c.Close()
	topic := "/sys/" + pk + "/" + dn + "/thing/event/property/post"
	if _, err := c.Write(connect(cr, 60)); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 4096)
	if t, body, err := packet(r); err != nil || t != 0x20 || len(body) < 2 || body[1] != 0 {
		return fmt.Errorf("CONNACK: type %#x %x %v", t, body, err)
	}
	if _, err := c.Write(subscribe(topic + "_reply")); err != nil {
		return err
	}
	if t, _, err := packet(r); err != nil || t != 0x90 {
		return fmt.Errorf("SUBACK: type %#x %v", t, err)
	}
	// One post, built once; each round rewrites its id (8 digits, no
	// leading zero: a distinct message the emulator answers) and its nine
	// stamps (13 digits of Unix ms) in place.
	post := publish(topic, payload())
	idAt := bytes.Index(post, []byte(`"id":"`)) + len(`"id":"`)
	var timeAt []int
	for i := 0; ; {
		j := bytes.Index(post[i:], []byte(`"time":`))
		if j < 0 {
			break
		}
		i += j + len(`"time":`)
		timeAt = append(timeAt, i)
	}
	w := tick.NewWake(time.Until(next(iv)))
	for n := 1; rounds == 0 || n <= rounds; n++ {
		<-w.C
		w.Reset(time.Until(next(iv)))
		digits(post[idAt:idAt+8], 10000000+int64(n%90000000))
		ms := time.Now().UnixMilli()
		for _, at := range timeAt {
			digits(post[at:at+13], ms)
		}
		if _, err := c.Write(post); err != nil {
			return err
		}
		if t, _, err := packet(r); err != nil {
			return err
		} else if t != 0x30 {
			return fmt.Errorf("want the post's reply, got packet type %#x", t)
		}
	}
	return nil
}

// digits writes v into b in decimal, right-aligned, without allocating.
func digits(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i, v = i-1, v/10 {
		b[i] = byte('0' + v%10)
	}
}

// next is the next multiple of iv on the wall clock, as gatewayd's
// sampling grid.
func next(iv time.Duration) time.Time {
	return time.Now().Truncate(iv).Add(iv)
}

// payload is a nine-property Alink post like gatewayd's for three BME280s.
func payload() []byte {
	ms := strconv.FormatInt(time.Now().UnixMilli(), 10)
	b := []byte(`{"id":"10000000","version":"1.0","sys":{"ack":1},"params":{`)
	for s := range 3 {
		for i, p := range []string{"temperature", "humidity", "pressure"} {
			if s+i > 0 {
				b = append(b, ',')
			}
			v := []string{"21.55", "45.09", "1013.3"}[i]
			b = fmt.Appendf(b, `"s%d_%s":{"value":%s,"time":%s}`, s, p, v, ms)
		}
	}
	return append(b, `},"method":"thing.event.property.post"}`...)
}

func connect(cr uplink.Credentials, keepalive uint16) []byte {
	b := mqttwire.AppendString(nil, "MQTT")
	b = append(b, 4, 0xC2) // 3.1.1; username, password, clean session
	b = binary.BigEndian.AppendUint16(b, keepalive)
	b = mqttwire.AppendString(b, cr.ClientID)
	b = mqttwire.AppendString(b, cr.Username)
	b = mqttwire.AppendString(b, cr.Password)
	return mqttwire.Frame(0x10, b)
}

func subscribe(topic string) []byte {
	b := mqttwire.AppendString([]byte{0, 1}, topic)
	return mqttwire.Frame(0x82, append(b, 0))
}

func publish(topic string, payload []byte) []byte {
	return mqttwire.Frame(0x30, append(mqttwire.AppendString(nil, topic), payload...))
}

// packet reads one MQTT packet: its type (high nibble) and body. The body
// aliases a buffer reused by the next call.
var body = make([]byte, 0, 4096)

func packet(r *bufio.Reader) (byte, []byte, error) {
	h, b, err := mqttwire.Read(r, body)
	return h & 0xf0, b, err
}
