/** The lock that keeps a second daemon off a state directory; "." cannot start a policy name. */
export const DAEMON_LOCK = '.daemon';
