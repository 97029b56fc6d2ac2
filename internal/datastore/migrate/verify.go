package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// TableDigest sums up one table: how many rows it holds and a digest of
// them all.
type TableDigest struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	// Digest is "sha256:" and the hex SHA-256 of the table's rows in
	// primary-key order, each value encoded the same whichever the engine.
	Digest string `json:"digest"`
}

// Digest reads every table of db and sums each up, in the order of the schema.
func Digest(ctx context.Context, db *Database) ([]TableDigest, error) {
	out := make([]TableDigest, 0, len(schema))
	for _, t := range schema {
		d, err := digestTable(ctx, db, t)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func digestTable(ctx context.Context, db *Database, t table) (TableDigest, error) {
	h := sha256.New()
	var n int64
	err := db.eachRow(ctx, t, func(row []any) error {
		n++
		for _, v := range row {
			writeValue(h, v)
		}
		return nil
	})
	if err != nil {
		return TableDigest{}, err
	}
	return TableDigest{Table: t.name, Rows: n, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

// Value tags in the digest's encoding: each value is a tag, then (but for
// NULL) its 8 bytes or its length and bytes, so that no two different rows
// encode the same.
const (
	tagNull byte = iota
	tagInteger
	tagText
	tagBytes
)

func writeValue(h hash.Hash, v any) {
	var buf [binary.MaxVarintLen64 + 1]byte
	switch v := v.(type) {
	case nil:
		h.Write([]byte{tagNull})
	case int64:
		buf[0] = tagInteger
		h.Write(binary.BigEndian.AppendUint64(buf[:1], uint64(v))) //nolint:gosec // the bit pattern is what is digested
	case string:
		buf[0] = tagText
		h.Write(binary.AppendUvarint(buf[:1], uint64(len(v))))
		h.Write([]byte(v))
	case []byte:
		buf[0] = tagBytes
		h.Write(binary.AppendUvarint(buf[:1], uint64(len(v))))
		h.Write(v)
	}
}

// Verify reads every table back from both databases and compares their
// row counts and digests. It returns the target's, and an error naming
// each table that differs: the target then is not a faithful copy, and
// should be dropped and created afresh before another attempt.
func Verify(ctx context.Context, from, to *Database) ([]TableDigest, error) {
	want, err := Digest(ctx, from)
	if err != nil {
		return nil, err
	}
	got, err := Digest(ctx, to)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for i := range want {
		if want[i] != got[i] {
			diffs = append(diffs, fmt.Sprintf("%s: the source has %d rows (%s), the target %d (%s)",
				want[i].Table, want[i].Rows, want[i].Digest, got[i].Rows, got[i].Digest))
		}
	}
	if len(diffs) > 0 {
		return got, &VerifyError{Target: to.String(), Diffs: diffs}
	}
	return got, nil
}

// VerifyError says that a copy differs from its source.
type VerifyError struct {
	// Target names the target database.
	Target string
	// Diffs describes each table that differs.
	Diffs []string
}

func (e *VerifyError) Error() string {
	return "VERIFICATION FAILED: the target (" + e.Target + ") is not a faithful copy of the source:\n  " +
		strings.Join(e.Diffs, "\n  ") +
		"\ndo not run treaty on it: drop the target database, create it afresh, and migrate again"
}
