package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// kind is how a column's values are read, written and digested: the
// engines name the types differently (INTEGER or BIGINT, BLOB or BYTEA)
// but hold the same values.
type kind int

const (
	integer kind = iota
	text
	bytes
)

// column is one column of a table.
type column struct {
	name string
	kind kind
}

// table is one table of the schema, as the copy reads, writes and
// digests it.
type table struct {
	name string
	// key lists the primary key's columns: rows are read, and digested, in
	// that order.
	key []string
	// identity names the column whose values the database generates (the
	// journal's seq), which the copy writes explicitly and whose sequence
	// it then moves past them; empty for none.
	identity string
	// seeded means the schema's migrations insert the table's rows
	// themselves (authority_revision's one row): the copy replaces them,
	// and they do not count as records a target already holds.
	seeded  bool
	columns []column
}

// names returns the table's column names, in the order of the schema.
func (t table) names() []string {
	names := make([]string, len(t.columns))
	for i, c := range t.columns {
		names[i] = c.name
	}
	return names
}

// schema is every table of the schema (the same in both engines) but
// schema_version, in an order that inserts a row after the rows it
// references. A table the schema gains must be added here:
// Copy refuses a database holding a table or a column this list does not
// name, and the package's tests fail on a newly migrated one.
var schema = []table{
	{name: "authorities", key: []string{"kind", "id"}, columns: []column{
		{"kind", text}, {"id", text}, {"state", text}, {"tainted", integer}, {"key_name", text},
		{"certificate_chain", bytes}, {"public_key", bytes}, {"upstream_skid", text},
		{"not_before", integer}, {"not_after", integer}, {"prepared_at", integer},
		{"activated_at", integer}, {"deactivated_at", integer}, {"published_sequence", integer},
	}},
	{name: "authority_revision", key: []string{"id"}, seeded: true, columns: []column{
		{"id", integer}, {"revision", integer},
	}},
	{name: "bundles", key: []string{"trust_domain"}, columns: []column{
		{"trust_domain", text}, {"local", integer}, {"document", bytes}, {"sequence", integer}, {"updated_at", integer},
	}},
	{name: "authority_journal", key: []string{"seq"}, identity: "seq", columns: []column{
		{"seq", integer}, {"at", integer}, {"kind", text}, {"authority_id", text}, {"event", text}, {"detail", text},
	}},
	{name: "relationships", key: []string{"trust_domain"}, columns: []column{
		{"trust_domain", text}, {"endpoint_urls", text}, {"profile", text}, {"endpoint_spiffe_id", text},
		{"managed_by", text}, {"created_at", integer}, {"updated_at", integer},
	}},
	{name: "entries", key: []string{"id"}, columns: []column{
		{"id", text}, {"spiffe_id", text}, {"parent_id", text}, {"selectors", text}, {"selector_key", text},
		{"federates_with", text}, {"x509_svid_ttl", integer}, {"jwt_svid_ttl", integer}, {"dns_names", text},
		{"hint", text}, {"admin", integer}, {"downstream", integer}, {"expires_at", integer},
		{"revision", integer}, {"created_at", integer},
	}},
	{name: "used_invites", key: []string{"nonce"}, columns: []column{
		{"nonce", text}, {"trust_domain", text}, {"used_at", integer},
	}},
	{name: "attested_nodes", key: []string{"spiffe_id"}, columns: []column{
		{"spiffe_id", text}, {"attestation_type", text}, {"serial", text}, {"not_after", integer},
		{"new_serial", text}, {"new_not_after", integer}, {"can_reattest", integer}, {"agent_version", text},
		{"created_at", integer}, {"updated_at", integer},
	}},
	{name: "attested_node_selectors", key: []string{"spiffe_id", "type", "value"}, columns: []column{
		{"spiffe_id", text}, {"type", text}, {"value", text},
	}},
	{name: "join_tokens", key: []string{"token"}, columns: []column{
		{"token", text}, {"expires_at", integer},
	}},
	{name: "leases", key: []string{"name"}, columns: []column{
		{"name", text}, {"holder", text}, {"expires_at", integer},
	}},
	{name: "sealed_keys", key: []string{"name"}, columns: []column{
		{"name", text}, {"sealed", bytes}, {"created_at", integer},
	}},
	{name: "receipts", key: []string{"trust_domain"}, columns: []column{
		{"trust_domain", text}, {"sequence", integer}, {"fetched_at", integer},
	}},
	{name: "partner_polls", key: []string{"trust_domain"}, columns: []column{
		{"trust_domain", text}, {"last_attempt", integer}, {"last_success", integer},
		{"consecutive_failures", integer}, {"last_error", text}, {"last_reason", text},
	}},
}

// versionTable records the schema version; Copy compares it rather than
// copying it.
const versionTable = "schema_version"

// checkSchema makes sure that schema describes db's schema exactly: the
// same tables, each with the same columns. A difference means this list
// fell behind the migrations, and a copy would lose records.
func checkSchema(ctx context.Context, db *Database) error {
	names, err := db.tableNames(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		if name != versionTable && !slices.ContainsFunc(schema, func(t table) bool { return t.name == name }) {
			return fmt.Errorf("%s holds table %s, which this treaty does not know how to copy", db, name)
		}
	}
	for _, t := range schema {
		if !slices.Contains(names, t.name) {
			return fmt.Errorf("%s has no table %s", db, t.name)
		}
		cols, err := db.columnNames(ctx, t.name)
		if err != nil {
			return err
		}
		if want := t.names(); !slices.Equal(cols, want) {
			return fmt.Errorf("%s: table %s has columns (%s), this treaty copies (%s)", db, t.name,
				strings.Join(cols, ", "), strings.Join(want, ", "))
		}
	}
	return nil
}

// tableNames lists the tables of db's schema.
func (db *Database) tableNames(ctx context.Context) ([]string, error) {
	query := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`
	if db.engine == Postgres {
		query = `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	}
	rows, err := db.db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("list the tables of %s: %w", db, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list the tables of %s: %w", db, err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the tables of %s: %w", db, err)
	}
	return names, nil
}

// columnNames lists a table's columns in the order of its definition.
func (db *Database) columnNames(ctx context.Context, name string) ([]string, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT * FROM `+name+` WHERE 1 = 0`) //nolint:gosec // table names come from schema
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s in %s: %w", name, db, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s in %s: %w", name, db, err)
	}
	return cols, rows.Err()
}
