"use client";
import { VolunteerTable } from "../VolunteerTable";

export default function AdminVolunteersPage() {
  return <VolunteerTable />;
}
