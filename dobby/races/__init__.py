"""Races: K attempts at one task on different hosts, backends or models; the check judges.

``spread`` (which attempt uses what, and the spending bound), ``pick`` (lanes and the winner),
``compare`` (one column per attempt) are pure; ``service`` stores races and acts on them.
"""
