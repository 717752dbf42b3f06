"""the VC network: sites, rooms, their events, bridges, bridge rooms, reconciles, catalogue syncs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 18:39:34.730204
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlplane.db

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('vc_catalogue_syncs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_catalogue_syncs'))
    )
    with op.batch_alter_table('vc_catalogue_syncs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vc_catalogue_syncs_at'), ['at'], unique=False)

    op.create_table('vc_reconciles',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_reconciles'))
    )
    with op.batch_alter_table('vc_reconciles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vc_reconciles_requested_at'), ['requested_at'], unique=False)

    op.create_table('vc_sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('seats', sa.Integer(), nullable=True),
    sa.Column('opening_hours', sa.String(length=16), nullable=True),
    sa.Column('opening_days', sa.JSON(), nullable=False),
    sa.Column('retired_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_sites')),
    sa.UniqueConstraint('code', name=op.f('uq_vc_sites_code'))
    )
    with op.batch_alter_table('vc_sites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vc_sites_region'), ['region'], unique=False)

    op.create_table('vc_bridges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=63), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('server', sa.String(length=63), nullable=False),
    sa.Column('rooms_capacity', sa.Integer(), nullable=False),
    sa.Column('participants_capacity', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=45), nullable=True),
    sa.Column('http_port', sa.Integer(), nullable=False),
    sa.Column('admin_port', sa.Integer(), nullable=False),
    sa.Column('admin_secret_sealed', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_since', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rooms_in_use', sa.Integer(), nullable=False),
    sa.Column('participants', sa.Integer(), nullable=False),
    sa.Column('last_seen_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=False),
    sa.Column('retired_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['vc_sites.id'], name=op.f('fk_vc_bridges_site_id_vc_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_bridges')),
    sa.UniqueConstraint('code', name=op.f('uq_vc_bridges_code'))
    )
    op.create_table('vc_rooms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('agency_id', sa.Integer(), nullable=False),
    sa.Column('building', sa.String(length=100), nullable=False),
    sa.Column('floor', sa.Integer(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('equipment', sa.JSON(), nullable=False),
    sa.Column('sip_uri', sa.String(length=260), nullable=False),
    sa.Column('address', sa.String(length=45), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('protocol', sa.String(length=8), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('needs_bridge_room', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_since', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_probe_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_rtt', sa.Float(), nullable=True),
    sa.Column('last_result', sa.String(length=200), nullable=False),
    sa.Column('out_of_service', sa.String(length=300), nullable=True),
    sa.Column('out_of_service_by', sa.String(length=64), nullable=True),
    sa.Column('out_of_service_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retired_at', controlplane.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agency_id'], ['agencies.id'], name=op.f('fk_vc_rooms_agency_id_agencies')),
    sa.ForeignKeyConstraint(['site_id'], ['vc_sites.id'], name=op.f('fk_vc_rooms_site_id_vc_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_rooms')),
    sa.UniqueConstraint('code', name=op.f('uq_vc_rooms_code')),
    sa.UniqueConstraint('sip_uri', name=op.f('uq_vc_rooms_sip_uri'))
    )
    with op.batch_alter_table('vc_rooms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vc_rooms_agency_id'), ['agency_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vc_rooms_site_id'), ['site_id'], unique=False)
        batch_op.create_index('ix_vc_rooms_state', ['state'], unique=False)

    op.create_table('vc_bridge_rooms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=False),
    sa.Column('bridge_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('pin_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bridge_id'], ['vc_bridges.id'], name=op.f('fk_vc_bridge_rooms_bridge_id_vc_bridges')),
    sa.ForeignKeyConstraint(['room_id'], ['vc_rooms.id'], name=op.f('fk_vc_bridge_rooms_room_id_vc_rooms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_bridge_rooms')),
    sa.UniqueConstraint('bridge_id', 'number', name='uq_vc_bridge_rooms_bridge_number'),
    sa.UniqueConstraint('room_id', name=op.f('uq_vc_bridge_rooms_room_id'))
    )
    with op.batch_alter_table('vc_bridge_rooms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vc_bridge_rooms_bridge_id'), ['bridge_id'], unique=False)

    op.create_table('vc_room_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=False),
    sa.Column('at', controlplane.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('before', sa.String(length=32), nullable=False),
    sa.Column('after', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['room_id'], ['vc_rooms.id'], name=op.f('fk_vc_room_events_room_id_vc_rooms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vc_room_events'))
    )
    with op.batch_alter_table('vc_room_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vc_room_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_vc_room_events_room_id'), ['room_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('vc_room_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vc_room_events_room_id'))
        batch_op.drop_index(batch_op.f('ix_vc_room_events_at'))

    op.drop_table('vc_room_events')
    with op.batch_alter_table('vc_bridge_rooms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vc_bridge_rooms_bridge_id'))

    op.drop_table('vc_bridge_rooms')
    with op.batch_alter_table('vc_rooms', schema=None) as batch_op:
        batch_op.drop_index('ix_vc_rooms_state')
        batch_op.drop_index(batch_op.f('ix_vc_rooms_site_id'))
        batch_op.drop_index(batch_op.f('ix_vc_rooms_agency_id'))

    op.drop_table('vc_rooms')
    op.drop_table('vc_bridges')
    with op.batch_alter_table('vc_sites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vc_sites_region'))

    op.drop_table('vc_sites')
    with op.batch_alter_table('vc_reconciles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vc_reconciles_requested_at'))

    op.drop_table('vc_reconciles')
    with op.batch_alter_table('vc_catalogue_syncs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vc_catalogue_syncs_at'))

    op.drop_table('vc_catalogue_syncs')
