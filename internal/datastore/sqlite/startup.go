package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	sqlitedriver "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// LockWait is how long Open waits for another process's lock on the
// database before it gives up: at start-up treaty holds the data
// directory's lock, so any other holder is not a treaty server (an sqlite3
// shell, a backup, a database browser) and will not let go by itself.
const LockWait = 2 * time.Second

// header starts every SQLite database file (SQLite file format, 1.3).
var header = []byte("SQLite format 3\x00")

// checkFile refuses a file that is not a usable SQLite database, without
// changing it: the header is read directly, and the integrity check runs
// on a read-only connection, which never writes the file (a read-write
// one would, for instance, checkpoint the WAL when it closes).
func checkFile(ctx context.Context, path string) error {
	empty, err := checkHeader(path)
	if err != nil || empty {
		return err
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", LockWait.Milliseconds()))
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return explain(path, err)
	}
	defer db.Close()
	problems, err := integrityProblems(ctx, db)
	if err != nil {
		return explain(path, err)
	}
	if len(problems) > 0 {
		return damaged(path, "integrity check: "+strings.Join(problems, "; "))
	}
	return nil
}

// maxProblems bounds the integrity check's findings quoted in an error.
const maxProblems = 3

// integrityProblems runs SQLite's integrity check and returns the first
// few problems it reports, one line each; none when the file is sound.
func integrityProblems(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, fmt.Sprintf("PRAGMA integrity_check(%d)", maxProblems))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		for l := range strings.SplitSeq(line, "\n") {
			if l = strings.TrimSpace(l); l != "ok" && l != "" && !strings.HasPrefix(l, "*** in database") {
				problems = append(problems, l)
			}
		}
	}
	return problems, rows.Err()
}

// checkHeader reads the first bytes of path: an empty file is a new
// database; anything else must start like a SQLite database.
func checkHeader(path string) (empty bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("open datastore %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, len(header))
	n, err := io.ReadFull(f, buf)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return true, nil
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return false, fmt.Errorf("read datastore %s: %w", path, err)
	case !bytes.Equal(buf[:n], header):
		return false, fmt.Errorf("database %s is not a SQLite database (it begins with %q); treaty has not changed it. "+
			"It was overwritten or replaced: restore the data directory (database and keys together) from a backup, or point data_dir at the right one", path, buf[:n])
	}
	return false, nil
}

// checkUnlocked takes and releases the write lock, waiting at most
// LockWait, so that a lock held by another process stops start-up with an
// explanation instead of failing the first write much later.
func (s *Store) checkUnlocked(ctx context.Context, path string) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return explain(path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", LockWait.Milliseconds())); err != nil {
		return explain(path, err)
	}
	defer conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds())) //nolint:errcheck // best effort; a failure shows on the next statement
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return explain(path, err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		return explain(path, err)
	}
	return nil
}

// explain turns SQLite's refusals at start-up into what to do.
func explain(path string, err error) error {
	var se *sqlitedriver.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("open datastore %s: %w", path, err)
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("database %s is locked by another process (waited %s); treaty has not changed it. "+
			"Stop what holds it (an sqlite3 shell, a backup or a database browser with a transaction open; fuser %s names it) and start treaty again: %w",
			path, LockWait, path, err)
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return damaged(path, err.Error())
	}
	return fmt.Errorf("open datastore %s: %w", path, err)
}

func damaged(path, detail string) error {
	return fmt.Errorf("database %s is damaged (%s); treaty has not changed it. "+
		"Stop treaty, move the data directory aside and restore it (database and keys together) from a backup", path, detail)
}
